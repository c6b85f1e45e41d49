/* origin_dep.c - libgcorigindep.so, found only through liborigin.so's
 * $ORIGIN RUNPATH. */
int origin_dep_value(void) { return 42; }

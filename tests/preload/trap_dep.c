/* trap_dep.c - libtrapdep.so: the dependency whose trap_value RTLD_NEXT
 * must find from libtrapnext.so. */
int trap_value(void) { return 2; }

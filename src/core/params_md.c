/* params_md.c - prints README.md's table of settings (params.def). */
#include <stdio.h>

#include "core/params.h"

int main(void) {
  gc_params_markdown(stdout);
  return fflush(stdout) ? 1 : 0;
}

/*
 * dl.c - dlsym interposition, so that programs which dlopen NCCL and look
 * its entry points up on that handle (Python ctypes, vLLM's pynccl) get the
 * wrappers too. docs/SHIM.md explains the choice.
 *
 * glibc's dlsym answers RTLD_NEXT and RTLD_DEFAULT from the scope of its
 * caller, found from its return address. A C wrapper that calls the real
 * dlsym would make libgcshim.so the caller and change what every other
 * library gets. So the exported dlsym is a few instructions of assembly: it
 * asks gc_dl_pre() whether this look-up is one of ours (an NCCL entry point
 * we wrap, on a handle whose definition lies in a libnccl); if so it returns
 * our wrapper, else it restores the arguments and *jumps* to the real dlsym
 * with the caller's return address untouched: glibc sees the true caller.
 * dlopen is not interposed at all, so $ORIGIN/RUNPATH resolution of other
 * libraries' dlopen calls cannot change.
 *
 * The real dlsym comes from dlvsym (not interposed), so there is no
 * recursion, even for look-ups made before our constructors ran.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <string.h>

#include "shim/shim.h"

GC_INTERNAL void *(*_Atomic gc_dl_real_dlsym)(void *, const char *);

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/* The wrappers' own prototypes: an older nccl.h (2.28.3 lacks
 * ncclCommRevoke) must not leave one undeclared. */
#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor) ret nccl##name params;
#include "nccl/nccl_api.def"
static const struct {
  const char *name;
  void *fn;
} wrappers[] = {
#define GC_NCCL_API(name, ret, kind, params, args, cat, major, minor) \
  {"nccl" #name, (void *)nccl##name},
#include "nccl/nccl_api.def"
};
#pragma GCC diagnostic pop

void *gc_shim_wrapper(const char *name) {
  for (size_t i = 0; i < sizeof wrappers / sizeof *wrappers; i++)
    if (!strcmp(wrappers[i].name, name)) return wrappers[i].fn;
  return NULL;
}

static void *(*real_dlsym(void))(void *, const char *) {
  void *(*f)(void *, const char *) = atomic_load_explicit(&gc_dl_real_dlsym, memory_order_acquire);
  if (GC_LIKELY(f != NULL)) return f;
  static const char *const versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17", NULL};
  for (int i = 0; versions[i] && !f; i++) {
    void *p = dlvsym(RTLD_NEXT, "dlsym", versions[i]);
    memcpy(&f, &p, sizeof p);
  }
  atomic_store_explicit(&gc_dl_real_dlsym, f, memory_order_release);
  return f;
}

static bool in_nccl(const void *addr) {
  Dl_info info;
  if (!addr || !dladdr(addr, &info) || !info.dli_fname) return false;
  const char *base = strrchr(info.dli_fname, '/');
  base = base ? base + 1 : info.dli_fname;
  return !strncmp(base, "libnccl.so", 10) ||
         (gc_nccl_library()[0] && !strcmp(info.dli_fname, gc_nccl_library()));
}

/* Our wrapper for this look-up, or NULL to let the real dlsym answer. Also
 * makes sure gc_dl_real_dlsym is set before the stub jumps through it. */
GC_INTERNAL void *gc_dl_pre(void *handle, const char *name);
void *gc_dl_pre(void *handle, const char *name) {
  void *(*real)(void *, const char *) = real_dlsym();
  if (!real || !name || name[0] != 'n' || strncmp(name, "nccl", 4)) return NULL;
  if (handle == RTLD_NEXT || handle == RTLD_DEFAULT || gc_shim_disabled()) return NULL;
  void *w = gc_shim_wrapper(name);
  if (!w) return NULL;
  /* Only on a handle whose own answer is NCCL's definition. */
  void *def = real(handle, name);
  return def && def != w && in_nccl(def) ? w : NULL;
}

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym, @function\n"
    "dlsym:\n"
    "  endbr64\n" /* a NOP without CET; a valid indirect-branch target with it */
    "  pushq %rdi\n"
    "  pushq %rsi\n"
    "  subq $8, %rsp\n"
    "  call gc_dl_pre\n"
    "  addq $8, %rsp\n"
    "  popq %rsi\n"
    "  popq %rdi\n"
    "  testq %rax, %rax\n"
    "  jnz 1f\n"
    "  movq gc_dl_real_dlsym(%rip), %rax\n"
    "  testq %rax, %rax\n"
    "  jz 1f\n"
    "  jmp *%rax\n"
    "1:\n"
    "  ret\n"
    ".size dlsym, .-dlsym\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl dlsym\n"
    ".type dlsym, %function\n"
    "dlsym:\n"
    "  hint #34\n" /* bti c: a NOP without BTI */
    "  stp x29, x30, [sp, #-32]!\n"
    "  mov x29, sp\n"
    "  stp x0, x1, [sp, #16]\n"
    "  bl gc_dl_pre\n"
    "  mov x2, x0\n"
    "  ldp x0, x1, [sp, #16]\n"
    "  ldp x29, x30, [sp], #32\n"
    "  cbnz x2, 1f\n"
    "  adrp x16, gc_dl_real_dlsym\n"
    "  ldr x16, [x16, :lo12:gc_dl_real_dlsym]\n"
    "  cbz x16, 2f\n"
    "  br x16\n"
    "1:\n"
    "  mov x0, x2\n"
    "  ret\n"
    "2:\n"
    "  mov x0, #0\n"
    "  ret\n"
    ".size dlsym, .-dlsym\n");
#endif

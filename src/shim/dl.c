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
 * libraries' dlopen calls cannot change. The same look-up answers the
 * driver's stream-capture entry points with capture.c's wrappers.
 *
 * dlvsym is interposed the same way (a versioned look-up of one of our
 * ncclX names on an NCCL handle answers the wrapper). Its real definition
 * is found without asking the dynamic linker: in the dynamic symbol table
 * of the loaded libc (or libdl), by its hash table, so there is no
 * recursion, even for look-ups made before our constructors ran. The real
 * dlsym then comes from that dlvsym (RTLD_NEXT, from this library).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <string.h>

#include "shim/shim.h"

GC_INTERNAL void *(*_Atomic gc_dl_real_dlsym)(void *, const char *);
GC_INTERNAL void *(*_Atomic gc_dl_real_dlvsym)(void *, const char *, const char *);

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

/* ---- libc's own dlvsym, from its dynamic symbol table -------------------- */

typedef struct {
  const char *name;
  void *addr;
} elf_find_t;

/* d_ptr of a loaded object's dynamic entry: glibc relocates most in place,
 * some ports do not. */
static const void *dyn_ptr(ElfW(Addr) base, ElfW(Addr) v) {
  return (const void *)(v < base ? v + base : v);
}

static uint32_t gnu_hash(const char *s) {
  uint32_t h = 5381;
  for (; *s; s++) h = h * 33 + (unsigned char)*s;
  return h;
}
static uint32_t sysv_hash(const char *s) {
  uint32_t h = 0, g;
  for (; *s; s++) {
    h = (h << 4) + (unsigned char)*s;
    if ((g = h & 0xf0000000u)) h ^= g >> 24;
    h &= ~g;
  }
  return h;
}

/* Symbol idx: a defined function named name, of the default version. */
static bool sym_is(const ElfW(Sym) * sym, const char *str, const ElfW(Half) * versym, uint32_t idx,
                   const char *name) {
  return sym[idx].st_value && sym[idx].st_shndx != SHN_UNDEF &&
         ELF64_ST_TYPE(sym[idx].st_info) == STT_FUNC && !strcmp(str + sym[idx].st_name, name) &&
         !(versym && (versym[idx] & 0x8000));
}

static int find_in(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  elf_find_t *f = arg;
  const char *base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
  base = base ? base + 1 : info->dlpi_name;
  if (!base || (strncmp(base, "libc.so", 7) && strncmp(base, "libdl.so", 8))) return 0;
  const ElfW(Dyn) *dyn = NULL;
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
      dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  if (!dyn) return 0;
  ElfW(Addr) b = info->dlpi_addr;
  const ElfW(Sym) *sym = NULL;
  const char *str = NULL;
  const uint32_t *gnu = NULL, *sysv = NULL;
  const ElfW(Half) *versym = NULL;
  for (; dyn->d_tag != DT_NULL; dyn++) {
    if (dyn->d_tag == DT_SYMTAB) sym = dyn_ptr(b, dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_STRTAB) str = dyn_ptr(b, dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_GNU_HASH) gnu = dyn_ptr(b, dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_HASH) sysv = dyn_ptr(b, dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_VERSYM) versym = dyn_ptr(b, dyn->d_un.d_ptr);
  }
  if (!sym || !str) return 0;
  if (gnu) {
    uint32_t nb = gnu[0], off = gnu[1], bloom = gnu[2];
    if (!nb) return 0;
    const uint32_t *buckets = gnu + 4 + bloom * (sizeof(ElfW(Addr)) / 4);
    const uint32_t *chain = buckets + nb;
    uint32_t h = gnu_hash(f->name);
    for (uint32_t i = buckets[h % nb]; i >= off; i++) {
      uint32_t h2 = chain[i - off];
      if ((h | 1) == (h2 | 1) && sym_is(sym, str, versym, i, f->name)) {
        f->addr = (void *)(b + sym[i].st_value);
        return 1;
      }
      if (h2 & 1) break;
    }
  } else if (sysv) {
    uint32_t nb = sysv[0];
    const uint32_t *buckets = sysv + 2, *chain = buckets + nb;
    for (uint32_t i = nb ? buckets[sysv_hash(f->name) % nb] : 0; i; i = chain[i])
      if (sym_is(sym, str, versym, i, f->name)) {
        f->addr = (void *)(b + sym[i].st_value);
        return 1;
      }
  }
  return 0;
}

static void *(*real_dlvsym(void))(void *, const char *, const char *) {
  void *(*f)(void *, const char *, const char *) =
      atomic_load_explicit(&gc_dl_real_dlvsym, memory_order_acquire);
  if (GC_LIKELY(f != NULL)) return f;
  elf_find_t find = {"dlvsym", NULL};
  dl_iterate_phdr(find_in, &find);
  memcpy(&f, &find.addr, sizeof f);
  atomic_store_explicit(&gc_dl_real_dlvsym, f, memory_order_release);
  return f;
}

static void *(*real_dlsym(void))(void *, const char *) {
  void *(*f)(void *, const char *) = atomic_load_explicit(&gc_dl_real_dlsym, memory_order_acquire);
  if (GC_LIKELY(f != NULL)) return f;
  void *(*v)(void *, const char *, const char *) = real_dlvsym();
  static const char *const versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17", NULL};
  for (int i = 0; v && versions[i] && !f; i++) {
    void *p = v(RTLD_NEXT, "dlsym", versions[i]); /* the caller: this library */
    memcpy(&f, &p, sizeof p);
  }
  atomic_store_explicit(&gc_dl_real_dlsym, f, memory_order_release);
  return f;
}

bool gc_shim_defined_in(const void *addr, const char *prefix, const char *path) {
  Dl_info info;
  if (!addr || !dladdr(addr, &info) || !info.dli_fname) return false;
  const char *base = strrchr(info.dli_fname, '/');
  base = base ? base + 1 : info.dli_fname;
  return !strncmp(base, prefix, strlen(prefix)) ||
         (path && path[0] && !strcmp(info.dli_fname, path));
}

static bool in_nccl(const void *addr) {
  return gc_shim_defined_in(addr, "libnccl.so", gc_nccl_library());
}

/* Our wrapper for this look-up, or NULL to let the real dlsym answer. Also
 * makes sure gc_dl_real_dlsym is set before the stub jumps through it. */
GC_INTERNAL void *gc_dl_pre(void *handle, const char *name);
void *gc_dl_pre(void *handle, const char *name) {
  void *(*real)(void *, const char *) = real_dlsym();
  if (!real || !name) return NULL;
  /* The driver's capture entry points, on a handle of libcuda or the
   * global scope (capture.c); RTLD_NEXT's answer depends on the caller. */
  if (name[0] == 'c' && handle != RTLD_NEXT && !gc_shim_disabled())
    return gc_shim_capture_lookup(handle, name, real);
  if (name[0] != 'n' || strncmp(name, "nccl", 4)) return NULL;
  if (handle == RTLD_NEXT || handle == RTLD_DEFAULT || gc_shim_disabled()) return NULL;
  void *w = gc_shim_wrapper(name);
  if (!w) return NULL;
  /* Only on a handle whose own answer is NCCL's definition. */
  void *def = real(handle, name);
  return def && def != w && in_nccl(def) ? w : NULL;
}

/* The same for dlvsym(handle, name, version). */
GC_INTERNAL void *gc_dlv_pre(void *handle, const char *name, const char *version);
void *gc_dlv_pre(void *handle, const char *name, const char *version) {
  void *(*real)(void *, const char *, const char *) = real_dlvsym();
  if (!real || !name || name[0] != 'n' || strncmp(name, "nccl", 4)) return NULL;
  if (handle == RTLD_NEXT || handle == RTLD_DEFAULT || gc_shim_disabled()) return NULL;
  void *w = gc_shim_wrapper(name);
  if (!w) return NULL;
  void *def = real(handle, name, version);
  return def && def != w && in_nccl(def) ? w : NULL;
}

#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl dlvsym\n"
    ".type dlvsym, @function\n"
    "dlvsym:\n"
    "  endbr64\n"
    "  pushq %rdi\n"
    "  pushq %rsi\n"
    "  pushq %rdx\n" /* three pushes: the stack is 16-byte aligned at the call */
    "  call gc_dlv_pre\n"
    "  popq %rdx\n"
    "  popq %rsi\n"
    "  popq %rdi\n"
    "  testq %rax, %rax\n"
    "  jnz 1f\n"
    "  movq gc_dl_real_dlvsym(%rip), %rax\n"
    "  testq %rax, %rax\n"
    "  jz 1f\n"
    "  jmp *%rax\n"
    "1:\n"
    "  ret\n"
    ".size dlvsym, .-dlvsym\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl dlvsym\n"
    ".type dlvsym, %function\n"
    "dlvsym:\n"
    "  hint #34\n"
    "  stp x29, x30, [sp, #-48]!\n"
    "  mov x29, sp\n"
    "  stp x0, x1, [sp, #16]\n"
    "  str x2, [sp, #32]\n"
    "  bl gc_dlv_pre\n"
    "  mov x3, x0\n"
    "  ldp x0, x1, [sp, #16]\n"
    "  ldr x2, [sp, #32]\n"
    "  ldp x29, x30, [sp], #48\n"
    "  cbnz x3, 1f\n"
    "  adrp x16, gc_dl_real_dlvsym\n"
    "  ldr x16, [x16, :lo12:gc_dl_real_dlvsym]\n"
    "  cbz x16, 2f\n"
    "  br x16\n"
    "1:\n"
    "  mov x0, x3\n"
    "  ret\n"
    "2:\n"
    "  mov x0, #0\n"
    "  ret\n"
    ".size dlvsym, .-dlvsym\n");
#endif

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

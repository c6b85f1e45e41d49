/* device.c - placeholder until the device backends land. */
#include "core/core.h"

GC_INTERNAL int gc_device_placeholder;

#ifndef FINETUNE_COPENBLAS_SHIM_H
#define FINETUNE_COPENBLAS_SHIM_H
// OpenBLAS's cblas.h also declares openblas_set_num_threads / openblas_get_config /
// openblas_get_corename, which the thread budget and the run provenance use.
#include <cblas.h>
#endif

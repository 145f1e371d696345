#ifndef FINETUNE_COPENMPI_SHIM_H
#define FINETUNE_COPENMPI_SHIM_H
// Open MPI defines its handles as casts of the addresses of global structs
// (`#define MPI_COMM_WORLD OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)`), which Swift
// cannot import. Each is re-exported here by a prefixed static inline function; header-only, so
// declaration and definition cannot drift apart.
#include <mpi.h>

static inline MPI_Comm ftd_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm ftd_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype ftd_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype ftd_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype ftd_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype ftd_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype ftd_mpi_char(void) { return MPI_CHAR; }
static inline MPI_Op ftd_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op ftd_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op ftd_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op ftd_mpi_bor(void) { return MPI_BOR; }
static inline void *ftd_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline int ftd_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline MPI_Info ftd_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int ftd_mpi_max_library_version_string(void) { return MPI_MAX_LIBRARY_VERSION_STRING; }
static inline int ftd_mpi_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline MPI_Errhandler ftd_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *ftd_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *ftd_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
// The largest message tag (an attribute of the communicator, at least 32767).
static inline int ftd_mpi_tag_ub(MPI_Comm comm) {
    int *value = 0, flag = 0;
    MPI_Comm_get_attr(comm, MPI_TAG_UB, &value, &flag);
    return flag && value ? *value : 32767;
}

#endif

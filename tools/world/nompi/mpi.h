/* mpi.h stand-in for building the world generator where no MPI is installed (tools/world/
 * gpu_train.sh). Only the type comm.h names in its struct is needed. */
#ifndef MICLIP_NOMPI_STUB_H
#define MICLIP_NOMPI_STUB_H
typedef int MPI_Comm;
#endif

/*
 * mesh_service: one service's instances in a packed form that lives in
 * the shared zone. One block with offsets instead of pointers: the poll
 * owner writes it once per change of the service, a worker copies it
 * out and reads it where it put it. Also the merge of a delta into a
 * service, and the JSON form of a service for the cache file.
 *
 * nginx-free: the unit tests call it directly.
 */

#ifndef MESH_SERVICE_H
#define MESH_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "mesh_snapshot.h"

/* bytes the packed form of these instances takes */
size_t mesh_service_packed_size(const mesh_instance_t *in, size_t n);

/* pack n instances (sorted by id) into buf of size bytes, exactly
 * mesh_service_packed_size(); returns the bytes written, 0 on error */
size_t mesh_service_pack(const mesh_instance_t *in, size_t n, void *buf,
    size_t size);

/* memory mesh_service_unpack() needs besides the block; 0: not a valid
 * block */
size_t mesh_service_unpack_size(const void *buf, size_t size);

/*
 * Read a packed block: svc->instances and their labels are placed in mem
 * (memsize bytes, at least mesh_service_unpack_size()), their strings
 * point into buf, which must outlive svc. Every offset is checked: -1 on
 * a block that is not what mesh_service_pack() writes.
 */
int mesh_service_unpack(const void *buf, size_t size, const char *name,
    mesh_service_t *svc, void *mem, size_t memsize);

/* the number of instances in a packed block (0 when not valid) */
size_t mesh_service_packed_count(const void *buf, size_t size);

/* 1 when the packed block has an instance with this id, else 0 */
int mesh_service_packed_has(const void *buf, size_t size, const char *id,
    size_t len);

/*
 * Apply a delta to a service: the instances of old that the delta neither
 * changed nor removed, and the delta's own, sorted by id, into a malloc()ed
 * array (free() it; its strings stay those of old and delta). *members is
 * set to 1 when the set of (address, port, weight) changed, which is what
 * a hash ring is built from. -1 on out of memory.
 */
int mesh_service_merge(const mesh_service_t *old, const mesh_service_t *delta,
    mesh_instance_t **out, size_t *n, int *members);

/* the service as registryd's snapshot writes it, {"name":..,"instances":
 * [..]}; returns the length the whole text needs (like snprintf), writes
 * at most size bytes */
size_t mesh_service_json(const mesh_service_t *svc, char *out, size_t size);

#endif

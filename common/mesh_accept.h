/*
 * mesh_accept: how much an HTTP Accept header wants a media type (RFC
 * 9110, 12.5.1), for the status location's content negotiation.
 */

#ifndef MESH_ACCEPT_H
#define MESH_ACCEPT_H

#include <stddef.h>

/*
 * The quality the len bytes of an Accept value give to type ("text/html",
 * lower case), in thousandths: the q of the most specific media range
 * that matches it (type/subtype, then type/x, then x/x, where x is a
 * star), 1000 when that range has no q, 0 when no range matches or its q
 * is not a valid qvalue.  An empty value matches nothing.  type must
 * hold a slash.
 */
int mesh_accept_quality(const char *accept, size_t len, const char *type);

#endif

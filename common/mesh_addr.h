/*
 * mesh_addr: IP literals and ADDR:PORT, the one reading of them in
 * registryd (listen, instances, health checks), registryctl and the
 * snapshot reader. Names are never resolved: the mesh carries addresses.
 */

#ifndef MESH_ADDR_H
#define MESH_ADDR_H

#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MESH_ADDR_LEN   46          /* INET6_ADDRSTRLEN: a literal and NUL */

/* mesh_hostport_parse() results */
#define MESH_ADDR_OK     0
#define MESH_ADDR_FORM  -1          /* not ADDR:PORT or [ADDR6]:PORT */
#define MESH_ADDR_IP    -2          /* the host is not a literal of its form */
#define MESH_ADDR_PORT  -3          /* the port is not 1..65535 */

typedef struct {
    union {
        struct sockaddr       sa;
        struct sockaddr_in    sin;
        struct sockaddr_in6   sin6;
    } u;
    socklen_t                 len;
} mesh_sockaddr_t;

/* 1 when s is an IPv4 or IPv6 literal, nothing around it */
int mesh_addr_valid(const char *s);

/* the literal ip and port as a socket address; -1 when ip is no literal */
int mesh_addr_sockaddr(const char *ip, int port, mesh_sockaddr_t *out);

/*
 * "127.0.0.1:7770" or "[::1]:7770" (an IPv6 literal always in brackets,
 * the port in decimal digits): host gets the bare literal (size at least
 * MESH_ADDR_LEN), port the port, out (when not NULL) the socket address.
 * Returns MESH_ADDR_OK or what is wrong; nothing is written on an error.
 */
int mesh_hostport_parse(const char *s, char *host, size_t size, int *port,
    mesh_sockaddr_t *out);

/*
 * a socket address as ADDR:PORT ("[ADDR6]:PORT"), into size bytes (at
 * least MESH_ADDR_TEXT_LEN); "" for a family other than IPv4 and IPv6
 */
#define MESH_ADDR_TEXT_LEN  (MESH_ADDR_LEN + sizeof("[]:65535"))

void mesh_addr_text(const struct sockaddr *sa, char *buf, size_t size);

/* a network: "127.0.0.0/8", "::1/128", "10.1.2.3" (a host) */
typedef struct {
    int             family;             /* AF_INET or AF_INET6 */
    unsigned char   addr[16];           /* network byte order */
    int             bits;               /* prefix length */
} mesh_cidr_t;

/* 0, or -1 when s is not an IP literal with an optional /BITS */
int mesh_cidr_parse(const char *s, size_t len, mesh_cidr_t *out);

/* 1 when the socket address is inside the network */
int mesh_cidr_match(const mesh_cidr_t *net, const struct sockaddr *sa);

/* 1 when the socket address, or the IP literal ip (sa NULL), is inside
 * one of the n networks */
int mesh_cidr_match_any(const mesh_cidr_t *nets, size_t n,
    const struct sockaddr *sa, const char *ip);

/* the family a host of s would be given: '4', or '6' in brackets */
int mesh_hostport_family(const char *s);

#endif

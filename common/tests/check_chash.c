/*
 * check_chash: CRC-32 and the consistent hash ring, against zlib and an
 * independent transcription of ngx_http_upstream_hash_module.c.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "mesh_balancer.h"


#define CK_NKEYS  1000


/*
 * The reference: ngx_http_upstream_init_chash(),
 * ngx_http_upstream_find_chash_point() and ngx_http_upstream_get_chash_peer()
 * written out as nginx has them, with a bitwise CRC-32 instead of a table.
 */

typedef struct {
    uint32_t     hash;
    const char  *server;        /* as ngx_str_t *server: by identity */
    size_t       server_len;
} ck_ref_point_t;


typedef struct {
    size_t           number;
    ck_ref_point_t  *point;
} ck_ref_points_t;


static void
ck_ref_crc32_update(uint32_t *crc, const void *data, size_t len)
{
    int                   k;
    uint32_t              c;
    const unsigned char  *p = data;

    c = *crc;

    while (len--) {
        c ^= *p++;

        for (k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0xedb88320 : c >> 1;
        }
    }

    *crc = c;
}


static int
ck_ref_cmp_points(const void *one, const void *two)
{
    const ck_ref_point_t  *first = one;
    const ck_ref_point_t  *second = two;

    if (first->hash < second->hash) {
        return -1;

    } else if (first->hash > second->hash) {
        return 1;

    } else {
        return 0;
    }
}


static void
ck_ref_init_chash(ck_ref_points_t *points, const char *const *servers,
    const int *weights, size_t n)
{
    size_t          host_len, port_len, npoints, i, j, total;
    uint32_t        hash, base_hash;
    const char     *host, *port, *server;
    unsigned char   c;
    union {
        uint32_t        value;
        unsigned char   byte[4];
    } prev_hash;

    total = 0;

    for (i = 0; i < n; i++) {
        total += weights[i];
    }

    points->point = malloc(sizeof(ck_ref_point_t) * total * 160);
    ck_assert_ptr_nonnull(points->point);
    points->number = 0;

    for (i = 0; i < n; i++) {
        server = servers[i];

        if (strlen(server) >= 5 && strncasecmp(server, "unix:", 5) == 0) {
            host = server + 5;
            host_len = strlen(server) - 5;
            port = NULL;
            port_len = 0;
            goto done;
        }

        for (j = 0; j < strlen(server); j++) {
            c = server[strlen(server) - j - 1];

            if (c == ':') {
                host = server;
                host_len = strlen(server) - j - 1;
                port = server + strlen(server) - j;
                port_len = j;
                goto done;
            }

            if (c < '0' || c > '9') {
                break;
            }
        }

        host = server;
        host_len = strlen(server);
        port = NULL;
        port_len = 0;

    done:

        base_hash = 0xffffffff;
        ck_ref_crc32_update(&base_hash, host, host_len);
        ck_ref_crc32_update(&base_hash, "", 1);
        ck_ref_crc32_update(&base_hash, port, port_len);

        prev_hash.value = 0;
        npoints = weights[i] * 160;

        for (j = 0; j < npoints; j++) {
            hash = base_hash;

            ck_ref_crc32_update(&hash, prev_hash.byte, 4);
            hash ^= 0xffffffff;

            points->point[points->number].hash = hash;
            points->point[points->number].server = server;
            points->point[points->number].server_len = strlen(server);
            points->number++;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            prev_hash.value = hash;
#else
            prev_hash.byte[0] = (unsigned char) (hash & 0xff);
            prev_hash.byte[1] = (unsigned char) ((hash >> 8) & 0xff);
            prev_hash.byte[2] = (unsigned char) ((hash >> 16) & 0xff);
            prev_hash.byte[3] = (unsigned char) ((hash >> 24) & 0xff);
#endif
        }
    }

    qsort(points->point, points->number, sizeof(ck_ref_point_t),
          ck_ref_cmp_points);

    for (i = 0, j = 1; j < points->number; j++) {
        if (points->point[i].hash != points->point[j].hash) {
            points->point[++i] = points->point[j];
        }
    }

    points->number = i + 1;
}


static size_t
ck_ref_find_chash_point(ck_ref_points_t *points, uint32_t hash)
{
    size_t           i, j, k;
    ck_ref_point_t  *point;

    point = &points->point[0];

    i = 0;
    j = points->number;

    while (i < j) {
        k = (i + j) / 2;

        if (hash > point[k].hash) {
            i = k + 1;

        } else if (hash < point[k].hash) {
            j = k;

        } else {
            return k;
        }
    }

    return i;
}


/* the peer (index into servers) nginx picks for key; tried[] as skip */

static int
ck_ref_get_chash_peer(ck_ref_points_t *points, const char *const *servers,
    size_t n, const int *tried, const char *key)
{
    size_t       i, h, tries;
    uint32_t     hash;
    const char  *server;

    hash = 0xffffffff;
    ck_ref_crc32_update(&hash, key, strlen(key));
    hash ^= 0xffffffff;

    h = ck_ref_find_chash_point(points, hash);
    tries = 0;

    for ( ;; ) {
        server = points->point[h % points->number].server;

        for (i = 0; i < n; i++) {
            if (tried && tried[i]) {
                continue;
            }

            if (strlen(servers[i]) == strlen(server)
                && strncmp(servers[i], server, strlen(server)) == 0)
            {
                return (int) i;
            }
        }

        h++;
        tries++;

        if (tries >= points->number) {
            return -1;
        }
    }
}


static void
ck_peers(mesh_peer_t *peers, const int *weights, size_t n)
{
    size_t  i;

    memset(peers, 0, n * sizeof(mesh_peer_t));

    for (i = 0; i < n; i++) {
        peers[i].weight = weights[i];
    }
}


static void
ck_compare_with_reference(const char *const *servers, const int *weights,
    size_t n, const int *tried)
{
    int                 a, b;
    char                key[64];
    size_t              i;
    mesh_peer_t         peers[16];
    ck_ref_points_t     ref;
    mesh_chash_ring_t   ring;

    ck_assert_int_le(n, 16);

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, weights, n), 0);
    ck_ref_init_chash(&ref, servers, weights, n);

    ck_assert_uint_eq(ring.npoints, ref.number);

    for (i = 0; i < ring.npoints; i++) {
        ck_assert_uint_eq(ring.points[i].hash, ref.point[i].hash);
        ck_assert_str_eq(servers[ring.points[i].peer], ref.point[i].server);
    }

    ck_peers(peers, weights, n);

    for (i = 0; i < n; i++) {
        peers[i].skip = tried ? tried[i] : 0;
    }

    for (i = 0; i < CK_NKEYS; i++) {
        snprintf(key, sizeof(key), "key-%zu", i);

        a = mesh_chash_pick(&ring, peers, mesh_crc32(key, strlen(key)),
                            NULL, NULL);
        b = ck_ref_get_chash_peer(&ref, servers, n, tried, key);

        ck_assert_msg(a == b, "key \"%s\": %d, nginx %d", key, a, b);
    }

    free(ref.point);
    mesh_chash_free(&ring);
}


START_TEST(crc32_equals_zlib)
{
    size_t          i, len, k;
    uint32_t        seed;
    unsigned char   buf[1024];

    ck_assert_uint_eq(mesh_crc32("123456789", 9), 0xcbf43926);
    ck_assert_uint_eq(mesh_crc32("", 0), 0);
    ck_assert_uint_eq(mesh_crc32(NULL, 0), 0);

    seed = 2024;

    for (i = 0; i < 2000; i++) {
        len = mesh_xorshift32(&seed) % sizeof(buf);

        for (k = 0; k < len; k++) {
            buf[k] = (unsigned char) mesh_xorshift32(&seed);
        }

        ck_assert_uint_eq(mesh_crc32(buf, len),
                          crc32(0L, buf, (uInt) len));
    }

    for (i = 0; i < 256; i++) {
        buf[0] = (unsigned char) i;
        ck_assert_uint_eq(mesh_crc32(buf, 1), crc32(0L, buf, 1));
    }
}
END_TEST


static int
ck_cmp_u32(const void *one, const void *two)
{
    uint32_t  a = *(const uint32_t *) one, b = *(const uint32_t *) two;

    return a < b ? -1 : a > b;
}


START_TEST(chash_ring_size_is_160_per_weight_minus_dups)
{
    int                 weights[] = { 1, 2, 3, 10 };
    char                hostport[64];
    size_t              i, j, n, hlen, distinct;
    uint32_t           *all, base, hash;
    unsigned char       prev[4];
    mesh_chash_ring_t   ring;
    const char         *servers[] = { "127.0.0.1:8081", "127.0.0.1:8082",
                                      "127.0.0.1:8083", "10.0.0.1:80" };

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, weights, 4), 0);

    /* all 160 * 16 points with zlib, "HOST\0PORT" spelled out */

    all = malloc(160 * 16 * sizeof(uint32_t));
    ck_assert_ptr_nonnull(all);
    n = 0;

    for (i = 0; i < 4; i++) {
        hlen = strchr(servers[i], ':') - servers[i];
        memcpy(hostport, servers[i], strlen(servers[i]) + 1);
        hostport[hlen] = '\0';

        base = crc32(0L, (const Bytef *) hostport, strlen(servers[i]));
        hash = 0;

        for (j = 0; j < (size_t) weights[i] * 160; j++) {
            prev[0] = (unsigned char) (hash & 0xff);
            prev[1] = (unsigned char) ((hash >> 8) & 0xff);
            prev[2] = (unsigned char) ((hash >> 16) & 0xff);
            prev[3] = (unsigned char) ((hash >> 24) & 0xff);

            hash = crc32(base, prev, 4);
            all[n++] = hash;
        }
    }

    ck_assert_uint_eq(n, 160 * 16);

    qsort(all, n, sizeof(uint32_t), ck_cmp_u32);

    for (i = 0, distinct = 0; i < n; i++) {
        distinct += (i == 0 || all[i] != all[i - 1]);
    }

    ck_assert_uint_eq(ring.npoints, distinct);

    /* the ring holds each distinct hash once, in order */

    for (i = 0, j = 0; i < ring.npoints; i++) {
        ck_assert_uint_lt(j, n);
        ck_assert_uint_eq(ring.points[i].hash, all[j]);

        while (j < n && all[j] == ring.points[i].hash) {
            j++;
        }
    }

    ck_assert_uint_eq(j, n);
    free(all);

    for (i = 1; i < ring.npoints; i++) {
        ck_assert_uint_lt(ring.points[i - 1].hash, ring.points[i].hash);
    }

    mesh_chash_free(&ring);

    /* one server: exactly 160 points (no CRC collisions among them) */

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, weights, 1), 0);
    ck_assert_uint_eq(ring.npoints, 160);
    mesh_chash_free(&ring);

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, NULL, 3), 0);
    ck_assert_uint_eq(ring.npoints, 480);
    mesh_chash_free(&ring);
}
END_TEST


START_TEST(chash_dups_collapse_to_the_first)
{
    int                 weights[] = { 1, 1 };
    size_t              i;
    mesh_chash_ring_t   ring;
    const char         *servers[] = { "127.0.0.1:8081", "127.0.0.1:8081" };

    /* the same server twice: every point has a twin, the first peer wins */

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, weights, 2), 0);
    ck_assert_uint_eq(ring.npoints, 160);

    for (i = 0; i < ring.npoints; i++) {
        ck_assert_uint_eq(ring.points[i].peer, 0);
    }

    mesh_chash_free(&ring);
}
END_TEST


START_TEST(chash_matches_nginx_three_servers)
{
    int          w1[] = { 1, 1, 1 }, w2[] = { 1, 2, 5 };
    const char  *servers[] = { "127.0.0.1:8081", "127.0.0.1:8082",
                               "127.0.0.1:8083" };

    ck_compare_with_reference(servers, w1, 3, NULL);
    ck_compare_with_reference(servers, w2, 3, NULL);
}
END_TEST


START_TEST(chash_matches_nginx_odd_servers)
{
    int          w[] = { 1, 1, 2, 1, 1, 3 };
    const char  *servers[] = { "[::1]:8080", "[2001:db8::10]:443",
                               "example.com", "unix:/tmp/backend.sock",
                               "10.0.0.1:", "host:80x" };

    ck_compare_with_reference(servers, w, 6, NULL);
}
END_TEST


START_TEST(chash_known_points)
{
    int                 found0, found1;
    size_t              i;
    uint32_t            first, second;
    unsigned char       prev[4];
    mesh_chash_ring_t   ring;
    const char         *servers[] = { "127.0.0.1:8081" };

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, NULL, 1), 0);

    /* point 0: crc32("127.0.0.1" "\0" "8081" "\0\0\0\0"), with zlib */

    first = crc32(0L, (const Bytef *) "127.0.0.1\0" "8081\0\0\0\0", 18);

    /* point 1: HOST \0 PORT, then point 0 as 4 little-endian bytes */

    prev[0] = (unsigned char) (first & 0xff);
    prev[1] = (unsigned char) ((first >> 8) & 0xff);
    prev[2] = (unsigned char) ((first >> 16) & 0xff);
    prev[3] = (unsigned char) ((first >> 24) & 0xff);

    second = crc32(0L, (const Bytef *) "127.0.0.1\0" "8081", 14);
    second = crc32(second, prev, 4);

    found0 = 0;
    found1 = 0;

    for (i = 0; i < ring.npoints; i++) {
        found0 |= (ring.points[i].hash == first);
        found1 |= (ring.points[i].hash == second);
    }

    ck_assert_int_eq(found0, 1);
    ck_assert_int_eq(found1, 1);

    mesh_chash_free(&ring);
}
END_TEST


START_TEST(chash_remove_one_moves_only_its_keys)
{
    int                 w[] = { 1, 1, 1, 1, 1 }, a, b, moved;
    char                key[64];
    size_t              i;
    mesh_peer_t         peers[5];
    mesh_chash_ring_t   r5, r4;
    const char         *s5[] = { "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80",
                                 "10.0.0.4:80", "10.0.0.5:80" };
    const char         *s4[] = { "10.0.0.1:80", "10.0.0.2:80",
                                 "10.0.0.4:80", "10.0.0.5:80" };
    static const int    map4[] = { 0, 1, 3, 4 };

    ck_assert_int_eq(mesh_chash_build(&r5, s5, NULL, w, 5), 0);
    ck_assert_int_eq(mesh_chash_build(&r4, s4, NULL, w, 4), 0);
    ck_peers(peers, w, 5);

    moved = 0;

    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "/user/%zu", i);

        a = mesh_chash_pick(&r5, peers, mesh_crc32(key, strlen(key)),
                            NULL, NULL);
        b = mesh_chash_pick(&r4, peers, mesh_crc32(key, strlen(key)),
                            NULL, NULL);
        ck_assert_int_ge(a, 0);
        ck_assert_int_ge(b, 0);
        b = map4[b];

        if (a != 2) {
            ck_assert_msg(a == b, "key %s moved from %d to %d", key, a, b);

        } else {
            ck_assert_int_ne(b, 2);
            moved++;
        }
    }

    /* about a fifth of the keys were on the removed server */

    ck_assert_int_gt(moved, 1000);
    ck_assert_int_lt(moved, 3500);

    mesh_chash_free(&r5);
    mesh_chash_free(&r4);
}
END_TEST


START_TEST(chash_skip_moves_to_next_distinct_peer)
{
    int                 w[] = { 1, 2, 1 }, tried[3] = { 0, 1, 0 }, a, b;
    char                key[64];
    size_t              i, k, start;
    uint32_t            hash;
    mesh_peer_t         peers[3];
    mesh_chash_ring_t   ring;
    const char         *servers[] = { "127.0.0.1:8081", "127.0.0.1:8082",
                                      "127.0.0.1:8083" };

    ck_compare_with_reference(servers, w, 3, tried);

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, w, 3), 0);
    ck_peers(peers, w, 3);

    for (i = 0; i < CK_NKEYS; i++) {
        snprintf(key, sizeof(key), "k%zu", i);
        hash = mesh_crc32(key, strlen(key));

        peers[1].skip = 0;
        a = mesh_chash_pick(&ring, peers, hash, NULL, NULL);

        peers[1].skip = 1;
        b = mesh_chash_pick(&ring, peers, hash, NULL, NULL);

        if (a != 1) {
            ck_assert_int_eq(a, b);
            continue;
        }

        /* the first point after the key's whose peer is not 1 */

        for (start = 0; start < ring.npoints; start++) {
            if (ring.points[start].hash >= hash) {
                break;
            }
        }

        for (k = 0; k < ring.npoints; k++) {
            if (ring.points[(start + k) % ring.npoints].peer != 1) {
                break;
            }
        }

        ck_assert_int_eq(b, ring.points[(start + k) % ring.npoints].peer);
    }

    /* every peer skipped: none; an empty ring: none */

    peers[0].skip = 1;
    peers[1].skip = 1;
    peers[2].skip = 1;
    ck_assert_int_eq(mesh_chash_pick(&ring, peers, 12345, NULL, NULL), -1);

    mesh_chash_free(&ring);

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, w, 0), 0);
    ck_assert_uint_eq(ring.npoints, 0);
    ck_assert_int_eq(mesh_chash_pick(&ring, peers, 12345, NULL, NULL), -1);
    mesh_chash_free(&ring);
}
END_TEST


START_TEST(chash_wraps_past_the_last_point)
{
    int                 w[] = { 1, 1 }, a;
    mesh_peer_t         peers[2];
    mesh_chash_ring_t   ring;
    const char         *servers[] = { "127.0.0.1:8081", "127.0.0.1:8082" };

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, w, 2), 0);
    ck_peers(peers, w, 2);

    a = mesh_chash_pick(&ring, peers, 0xffffffff, NULL, NULL);

    if (ring.points[ring.npoints - 1].hash != 0xffffffff) {
        ck_assert_int_eq(a, (int) ring.points[0].peer);
    }

    ck_assert_int_eq(mesh_chash_pick(&ring, peers, 0, NULL, NULL),
                     (int) ring.points[0].peer);
    ck_assert_int_eq(mesh_chash_pick(&ring, peers, ring.points[5].hash,
                                     NULL, NULL),
                     (int) ring.points[5].peer);
    ck_assert_int_eq(mesh_chash_pick(&ring, peers, ring.points[5].hash + 1,
                                     NULL, NULL),
                     (int) ring.points[6].peer);

    mesh_chash_free(&ring);
}
END_TEST


START_TEST(chash_build_rejects_bad_weight)
{
    int                 w[] = { 1, 0 };
    size_t              lens[] = { 9, 14 };
    mesh_chash_ring_t   ring;
    const char         *servers[] = { "127.0.0.1:8081xxxx", "127.0.0.1:8082" };

    ck_assert_int_eq(mesh_chash_build(&ring, servers, lens, w, 2), -1);
    ck_assert_ptr_null(ring.points);

    /* lens cut "127.0.0.1:8081xxxx" to "127.0.0.1" */

    w[1] = 1;
    ck_assert_int_eq(mesh_chash_build(&ring, servers, lens, w, 2), 0);
    mesh_chash_free(&ring);
    mesh_chash_free(NULL);
}
END_TEST


START_TEST(chash_builder_in_slices_equals_one_build)
{
    int                    weights[40];
    char                   names[40][32];
    size_t                 i, steps, budgets[] = { 1, 7, 160, 65537 };
    const char            *servers[40];
    mesh_chash_ring_t      one, sliced;
    mesh_chash_builder_t   b;

    for (i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.%zu.%zu:%zu", i / 7,
                 i % 7, 8000 + i);
        servers[i] = names[i];
        weights[i] = 1 + (int) (i % 5);
    }

    /* the same server twice too: collapsed points across slices */
    servers[39] = servers[3];

    ck_assert_int_eq(mesh_chash_build(&one, servers, NULL, weights, 40), 0);
    ck_assert_uint_eq(mesh_chash_points(weights, 40), 160 * 120);

    for (i = 0; i < sizeof(budgets) / sizeof(budgets[0]); i++) {
        ck_assert_int_eq(mesh_chash_builder_init(&b, servers, NULL, weights,
                                                 40), 0);

        for (steps = 0; mesh_chash_builder_step(&b, budgets[i]) == 0;
             steps++)
        {
            ck_assert_uint_lt(steps, 10 * 160 * 120);
        }

        mesh_chash_builder_take(&b, &sliced);
        mesh_chash_builder_free(&b);

        ck_assert_uint_eq(sliced.npoints, one.npoints);
        ck_assert(memcmp(sliced.points, one.points,
                         one.npoints * sizeof(mesh_chash_point_t)) == 0);
        ck_assert_uint_eq(sliced.bits, one.bits);
        ck_assert(memcmp(sliced.index, one.index,
                         (((size_t) 1 << one.bits) + 1) * sizeof(uint32_t))
                  == 0);

        mesh_chash_free(&sliced);
    }

    mesh_chash_free(&one);

    /* nothing to build */
    ck_assert_int_eq(mesh_chash_builder_init(&b, servers, NULL, weights, 0),
                     0);
    ck_assert_int_eq(mesh_chash_builder_step(&b, 1), 1);
    mesh_chash_builder_take(&b, &sliced);
    ck_assert_uint_eq(sliced.npoints, 0);
    mesh_chash_builder_free(&b);
}
END_TEST


/*
 * The index by the top bits of the hash finds the same point as a search
 * of the whole ring: for random hashes, every point's own hash and its
 * neighbours, and both ends.
 */
START_TEST(chash_index_finds_what_a_search_finds)
{
    int                 weights[25], a, b;
    char                names[25][32];
    size_t              i, k, nb;
    uint32_t            hash, seed, *index, probes[3];
    mesh_peer_t         peers[25];
    mesh_chash_ring_t   ring;
    const char         *servers[25];

    memset(peers, 0, sizeof(peers));

    for (i = 0; i < 25; i++) {
        snprintf(names[i], sizeof(names[i]), "10.1.0.%zu:%zu", i, 9000 + i);
        servers[i] = names[i];
        weights[i] = 1 + (int) (i % 4);
    }

    ck_assert_int_eq(mesh_chash_build(&ring, servers, NULL, weights, 25), 0);
    ck_assert_ptr_nonnull(ring.index);

    /* about two points per bucket, buckets in order, all points covered */

    nb = (size_t) 1 << ring.bits;
    ck_assert_uint_ge(2 * nb, ring.npoints / 2);
    ck_assert_uint_le(nb, ring.npoints);
    ck_assert_uint_eq(ring.index[0], 0);
    ck_assert_uint_eq(ring.index[nb], ring.npoints);

    for (k = 0; k < nb; k++) {
        if (ring.index[k] > ring.index[k + 1]) {
            ck_abort_msg("bucket %zu starts after the next", k);
        }
    }

    index = ring.index;
    seed = 88172645u;

    for (i = 0; i < 200000 + 3 * ring.npoints; i++) {
        if (i < 200000) {
            hash = mesh_xorshift32(&seed);
            probes[0] = hash;
            probes[1] = 0;
            probes[2] = 0xffffffff;

        } else {
            hash = ring.points[(i - 200000) / 3].hash;
            probes[0] = hash;
            probes[1] = hash - 1;
            probes[2] = hash + 1;
        }

        for (k = 0; k < 3; k++) {
            ring.index = index;
            a = mesh_chash_pick(&ring, peers, probes[k], NULL, NULL);
            ring.index = NULL;
            b = mesh_chash_pick(&ring, peers, probes[k], NULL, NULL);

            if (a != b) {
                ring.index = index;
                ck_abort_msg("hash %u: %d with the index, %d without",
                             probes[k], a, b);
            }
        }
    }

    ring.index = index;
    mesh_chash_free(&ring);
}
END_TEST


Suite *
chash_suite(void)
{
    TCase  *tc;
    Suite  *s;

    s = suite_create("chash");

    tc = tcase_create("chash");
    tcase_add_test(tc, crc32_equals_zlib);
    tcase_add_test(tc, chash_ring_size_is_160_per_weight_minus_dups);
    tcase_add_test(tc, chash_dups_collapse_to_the_first);
    tcase_add_test(tc, chash_matches_nginx_three_servers);
    tcase_add_test(tc, chash_matches_nginx_odd_servers);
    tcase_add_test(tc, chash_known_points);
    tcase_add_test(tc, chash_remove_one_moves_only_its_keys);
    tcase_add_test(tc, chash_skip_moves_to_next_distinct_peer);
    tcase_add_test(tc, chash_wraps_past_the_last_point);
    tcase_add_test(tc, chash_build_rejects_bad_weight);
    tcase_add_test(tc, chash_builder_in_slices_equals_one_build);
    tcase_add_test(tc, chash_index_finds_what_a_search_finds);
    suite_add_tcase(s, tc);

    return s;
}

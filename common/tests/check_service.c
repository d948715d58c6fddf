/*
 * check_service: the packed form of a service, deltas merged into it, and
 * its JSON form read back by the snapshot parser.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_service.h"
#include "mesh_snapshot.h"


static const char  full[] =
    "{\"index\":7,\"registry\":\"00ff00ff00ff00ff\",\"delta\":false,"
    "\"services\":[{\"name\":\"orders\",\"instances\":["
    "{\"id\":\"o2\",\"address\":\"::1\",\"port\":8082,\"weight\":2,"
    "\"zone\":\"a\",\"labels\":{\"version\":\"v2\",\"q\":\"say \\\"hi\\\"\"},"
    "\"health\":\"critical\"},"
    "{\"id\":\"o1\",\"address\":\"127.0.0.1\",\"port\":8081,"
    "\"labels\":{}}]}],\"policies\":[]}";


static mesh_snapshot_t *
parse(const char *json)
{
    char              err[MESH_ERR_LEN];
    mesh_snapshot_t  *s;

    s = mesh_snapshot_parse(json, strlen(json), err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);

    return s;
}


/* pack then unpack; the caller frees *blob and *mem */
static void
roundtrip(const mesh_service_t *svc, mesh_service_t *out, void **blob,
    void **mem)
{
    size_t  size, msize;

    size = mesh_service_packed_size(svc->instances, svc->ninstances);
    *blob = malloc(size);
    ck_assert_ptr_nonnull(*blob);
    ck_assert_uint_eq(mesh_service_pack(svc->instances, svc->ninstances,
                                        *blob, size), size);

    msize = mesh_service_unpack_size(*blob, size);
    ck_assert_uint_gt(msize, 0);
    *mem = malloc(msize);
    ck_assert_int_eq(mesh_service_unpack(*blob, size, svc->name, out, *mem,
                                         msize), 0);
}


START_TEST(service_pack_unpack_keeps_every_field)
{
    void             *blob, *mem;
    mesh_service_t    out;
    mesh_snapshot_t  *s;

    s = parse(full);
    ck_assert_uint_eq(s->registry, 0x00ff00ff00ff00ffULL);
    ck_assert_int_eq(s->delta, 0);
    ck_assert_int_eq(s->has_policies, 1);

    roundtrip(&s->services[0], &out, &blob, &mem);

    ck_assert_uint_eq(out.ninstances, 2);
    ck_assert_str_eq(out.instances[0].id, "o1");
    ck_assert_str_eq(out.instances[0].server, "127.0.0.1:8081");
    ck_assert_int_eq(out.instances[0].weight, 1);
    ck_assert_int_eq(out.instances[0].healthy, 1);
    ck_assert_ptr_null(out.instances[0].zone);
    ck_assert_uint_eq(out.instances[0].nlabels, 0);
    ck_assert_str_eq(out.instances[1].id, "o2");
    ck_assert_str_eq(out.instances[1].address, "::1");
    ck_assert_str_eq(out.instances[1].server, "[::1]:8082");
    ck_assert_uint_eq(out.instances[1].server_len, 10);
    ck_assert_int_eq(out.instances[1].port, 8082);
    ck_assert_int_eq(out.instances[1].weight, 2);
    ck_assert_int_eq(out.instances[1].healthy, 0);
    ck_assert_str_eq(out.instances[1].zone, "a");
    ck_assert_uint_eq(out.instances[1].nlabels, 2);
    ck_assert_str_eq(out.instances[1].labels[0].key, "q");
    ck_assert_str_eq(out.instances[1].labels[0].value, "say \"hi\"");

    free(blob);
    free(mem);
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(service_unpack_refuses_damaged_blocks)
{
    char             *blob;
    size_t            size, msize, i;
    void             *mem;
    mesh_service_t    out;
    mesh_snapshot_t  *s;

    s = parse(full);
    size = mesh_service_packed_size(s->services[0].instances, 2);
    blob = malloc(size);
    ck_assert_uint_eq(mesh_service_pack(s->services[0].instances, 2, blob,
                                        size), size);
    msize = mesh_service_unpack_size(blob, size);
    mem = malloc(msize);

    /* a short block, or any size but its own */
    ck_assert_uint_eq(mesh_service_unpack_size(blob, size - 1), 0);
    ck_assert_int_eq(mesh_service_unpack(blob, size - 1, "x", &out, mem,
                                         msize), -1);
    ck_assert_int_eq(mesh_service_unpack(blob, size, "x", &out, mem,
                                         msize - 1), -1);

    /* every single byte flipped in the header and the instance table is
     * refused or still reads as a block whose strings lie inside it */
    for (i = 0; i < size; i++) {
        blob[i] ^= 0x5a;
        msize = mesh_service_unpack_size(blob, size);
        if (msize) {
            void *m2 = malloc(msize);
            if (mesh_service_unpack(blob, size, "x", &out, m2, msize) == 0) {
                size_t k;
                for (k = 0; k < out.ninstances; k++) {
                    ck_assert(out.instances[k].id >= blob
                              && out.instances[k].id < blob + size);
                }
            }
            free(m2);
        }
        blob[i] ^= 0x5a;
    }

    free(blob);
    free(mem);
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(service_merge_applies_changes_and_removals)
{
    int               members;
    size_t            n;
    mesh_snapshot_t  *s, *d;
    mesh_instance_t  *r;

    s = parse("{\"index\":1,\"services\":[{\"name\":\"a\",\"instances\":["
              "{\"id\":\"a1\",\"address\":\"10.0.0.1\",\"port\":1},"
              "{\"id\":\"a2\",\"address\":\"10.0.0.2\",\"port\":2},"
              "{\"id\":\"a3\",\"address\":\"10.0.0.3\",\"port\":3}]}]}");

    /* health only: the ring's members stay */
    d = parse("{\"index\":2,\"delta\":true,\"services\":[{\"name\":\"a\","
              "\"instances\":[{\"id\":\"a2\",\"address\":\"10.0.0.2\","
              "\"port\":2,\"health\":\"critical\"}],\"removed\":[]}]}");
    ck_assert_int_eq(d->delta, 1);
    ck_assert_int_eq(d->has_policies, 0);
    ck_assert_int_eq(mesh_service_merge(&s->services[0], &d->services[0],
                                        &r, &n, &members), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(members, 0);
    ck_assert_int_eq(r[1].healthy, 0);
    free(r);
    mesh_snapshot_free(d);

    /* a weight change, a removal, a new one */
    d = parse("{\"index\":3,\"delta\":true,\"services\":[{\"name\":\"a\","
              "\"instances\":[{\"id\":\"a0\",\"address\":\"10.0.0.9\","
              "\"port\":9},{\"id\":\"a3\",\"address\":\"10.0.0.3\","
              "\"port\":3,\"weight\":5}],\"removed\":[\"a2\",\"zz\"]}]}");
    ck_assert_uint_eq(d->services[0].nremoved, 2);
    ck_assert_int_eq(mesh_service_merge(&s->services[0], &d->services[0],
                                        &r, &n, &members), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(members, 1);
    ck_assert_str_eq(r[0].id, "a0");
    ck_assert_str_eq(r[1].id, "a1");
    ck_assert_str_eq(r[2].id, "a3");
    ck_assert_int_eq(r[2].weight, 5);
    free(r);
    mesh_snapshot_free(d);

    /* into nothing: a service new to this nginx */
    d = parse("{\"index\":4,\"delta\":true,\"services\":[{\"name\":\"b\","
              "\"instances\":[{\"id\":\"b1\",\"address\":\"10.0.0.1\","
              "\"port\":1}]}]}");
    ck_assert_int_eq(mesh_service_merge(NULL, &d->services[0], &r, &n,
                                        &members), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(members, 1);
    free(r);
    mesh_snapshot_free(d);

    mesh_snapshot_free(s);
}
END_TEST


START_TEST(service_delta_refuses_an_id_changed_and_removed)
{
    char              err[MESH_ERR_LEN];
    const char       *bad;
    mesh_snapshot_t  *s;

    bad = "{\"index\":2,\"delta\":true,\"services\":[{\"name\":\"a\","
          "\"instances\":[{\"id\":\"a2\",\"address\":\"10.0.0.2\","
          "\"port\":2}],\"removed\":[\"a2\"]}]}";
    s = mesh_snapshot_parse(bad, strlen(bad), err, sizeof(err));
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, "both changed and removed") != NULL, "%s", err);

    bad = "{\"index\":2,\"delta\":1,\"services\":[]}";
    ck_assert_ptr_null(mesh_snapshot_parse(bad, strlen(bad), err,
                                           sizeof(err)));
    bad = "{\"index\":2,\"registry\":\"xyz\",\"services\":[]}";
    ck_assert_ptr_null(mesh_snapshot_parse(bad, strlen(bad), err,
                                           sizeof(err)));
}
END_TEST


START_TEST(service_json_reads_back_the_same)
{
    char              *text, *doc;
    size_t             len, dlen;
    void              *blob, *mem;
    mesh_service_t     out;
    mesh_snapshot_t   *s, *again;

    s = parse(full);
    roundtrip(&s->services[0], &out, &blob, &mem);

    len = mesh_service_json(&out, NULL, 0);
    text = malloc(len + 1);
    ck_assert_uint_eq(mesh_service_json(&out, text, len + 1), len);
    text[len] = '\0';

    dlen = len + 64;
    doc = malloc(dlen);
    snprintf(doc, dlen, "{\"index\":7,\"services\":[%s]}", text);

    again = parse(doc);
    ck_assert_uint_eq(again->nservices, 1);
    ck_assert_uint_eq(again->services[0].ninstances, 2);
    ck_assert_str_eq(again->services[0].instances[1].labels[0].value,
                     "say \"hi\"");
    ck_assert_str_eq(again->services[0].instances[1].zone, "a");
    ck_assert_int_eq(again->services[0].instances[1].healthy, 0);
    ck_assert_str_eq(again->services[0].instances[1].server, "[::1]:8082");

    mesh_snapshot_free(again);
    free(doc);
    free(text);
    free(blob);
    free(mem);
    mesh_snapshot_free(s);
}
END_TEST


Suite *
service_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("service");
    tc = tcase_create("service");

    tcase_add_test(tc, service_pack_unpack_keeps_every_field);
    tcase_add_test(tc, service_unpack_refuses_damaged_blocks);
    tcase_add_test(tc, service_merge_applies_changes_and_removals);
    tcase_add_test(tc, service_delta_refuses_an_id_changed_and_removed);
    tcase_add_test(tc, service_json_reads_back_the_same);
    suite_add_tcase(s, tc);

    return s;
}

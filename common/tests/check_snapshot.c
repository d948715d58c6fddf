/*
 * check_snapshot: the snapshot parser on good, hostile, truncated and
 * large documents.
 */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_snapshot.h"


/* registryd's rd_snapshot_build() output, byte for byte */

static const char  ck_registryd_doc[] =
    "{\"index\":42,\"services\":["
    "\n{\"name\":\"orders\",\"instances\":["
    "\n{\"id\":\"o1\",\"address\":\"127.0.0.1\",\"port\":8081,\"weight\":1,"
    "\"zone\":\"a\",\"labels\":{\"version\":\"v2\"},\"health\":\"passing\"},"
    "\n{\"id\":\"o2\",\"address\":\"127.0.0.1\",\"port\":8082,\"weight\":3,"
    "\"labels\":{},\"health\":\"critical\"}]},"
    "\n{\"name\":\"users\",\"instances\":["
    "\n{\"id\":\"u1\",\"address\":\"::1\",\"port\":9000,\"weight\":1000,"
    "\"zone\":\"b\",\"labels\":{\"version\":\"v1\",\"tier\":\"gold\"},"
    "\"health\":\"passing\"}]}],\n\"policies\":[]}\n";

static const char  ck_registryd_empty[] =
    "{\"index\":0,\"services\":[],\"policies\":[]}\n";


#define CK_INST  "\"id\":\"i\",\"address\":\"127.0.0.1\",\"port\":80"

#define CK_DOC_INSTS(insts)                                                  \
    "{\"index\":1,\"services\":[{\"name\":\"s\",\"instances\":["             \
    insts "]}]}"

#define CK_DOC_INST(fields)  CK_DOC_INSTS("{" fields "}")


/* parse from an exactly sized heap copy, so ASan sees any overread */

static mesh_snapshot_t *
ck_parse_len(const char *text, size_t len, char *err, size_t errlen)
{
    char             *copy;
    mesh_snapshot_t  *s;

    copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, text, len);

    s = mesh_snapshot_parse(copy, len, err, errlen);

    /* the snapshot must not point into the text */
    memset(copy, 'x', len);
    free(copy);

    return s;
}


static mesh_snapshot_t *
ck_parse(const char *text)
{
    char              err[MESH_ERR_LEN];
    mesh_snapshot_t  *s;

    s = ck_parse_len(text, strlen(text), err, sizeof(err));
    ck_assert_msg(s != NULL, "parse failed: %s", err);

    return s;
}


static void
ck_parse_fails(const char *text, size_t len, const char *what)
{
    char              err[MESH_ERR_LEN];
    mesh_snapshot_t  *s;

    err[0] = '\0';
    s = ck_parse_len(text, len, err, sizeof(err));

    if (s) {
        mesh_snapshot_free(s);
    }

    ck_assert_msg(s == NULL, "accepted: %s", text);
    ck_assert_msg(strncmp(err, "snapshot: byte ", 15) == 0,
                  "no offset in \"%s\" for %s", err, text);
    ck_assert_msg(strchr(err, '\n') == NULL, "a multi-line error: %s", err);

    if (what) {
        ck_assert_msg(strstr(err, what) != NULL, "\"%s\" not in \"%s\"",
                      what, err);
    }
}


static const mesh_instance_t *
ck_instance(const mesh_snapshot_t *s, const char *svc, size_t i)
{
    const mesh_service_t  *service;

    service = mesh_snapshot_service(s, svc, strlen(svc));
    ck_assert_ptr_nonnull(service);
    ck_assert_uint_lt(i, service->ninstances);

    return &service->instances[i];
}


/* xorshift32: the fuzz's own generator, repeatable */
static uint32_t
ck_xorshift32(uint32_t *state)
{
    uint32_t  x = *state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;

    *state = x;

    return x;
}


START_TEST(snapshot_registryd_format_parses)
{
    mesh_snapshot_t        *s;
    const mesh_instance_t  *in;

    s = ck_parse(ck_registryd_doc);

    ck_assert_uint_eq(s->index, 42);
    ck_assert_uint_eq(s->nservices, 2);
    ck_assert_str_eq(s->services[0].name, "orders");
    ck_assert_str_eq(s->services[1].name, "users");
    ck_assert_str_eq(s->policies, "[]");
    ck_assert_uint_eq(s->policies_len, 2);

    ck_assert_uint_eq(s->services[0].ninstances, 2);

    in = ck_instance(s, "orders", 0);
    ck_assert_str_eq(in->id, "o1");
    ck_assert_str_eq(in->address, "127.0.0.1");
    ck_assert_int_eq(in->port, 8081);
    ck_assert_int_eq(in->weight, 1);
    ck_assert_str_eq(in->zone, "a");
    ck_assert_int_eq(in->healthy, 1);
    ck_assert_uint_eq(in->nlabels, 1);
    ck_assert_str_eq(in->labels[0].key, "version");
    ck_assert_str_eq(in->labels[0].value, "v2");
    ck_assert_str_eq(in->server, "127.0.0.1:8081");
    ck_assert_uint_eq(in->server_len, 14);

    in = ck_instance(s, "orders", 1);
    ck_assert_str_eq(in->id, "o2");
    ck_assert_int_eq(in->weight, 3);
    ck_assert_ptr_null(in->zone);
    ck_assert_int_eq(in->healthy, 0);
    ck_assert_uint_eq(in->nlabels, 0);

    in = ck_instance(s, "users", 0);
    ck_assert_str_eq(in->address, "::1");
    ck_assert_int_eq(in->weight, 1000);
    ck_assert_str_eq(in->server, "[::1]:9000");
    ck_assert_uint_eq(in->server_len, 10);

    /* labels come sorted by key */
    ck_assert_uint_eq(in->nlabels, 2);
    ck_assert_str_eq(in->labels[0].key, "tier");
    ck_assert_str_eq(in->labels[0].value, "gold");
    ck_assert_str_eq(in->labels[1].key, "version");

    mesh_snapshot_free(s);

    s = ck_parse(ck_registryd_empty);
    ck_assert_uint_eq(s->index, 0);
    ck_assert_uint_eq(s->nservices, 0);
    ck_assert_ptr_null(mesh_snapshot_service(s, "orders", 6));
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_minimal_gets_defaults)
{
    mesh_snapshot_t        *s;
    const mesh_instance_t  *in;

    s = ck_parse("{\"index\":7}");
    ck_assert_uint_eq(s->index, 7);
    ck_assert_uint_eq(s->nservices, 0);
    ck_assert_str_eq(s->policies, "[]");
    mesh_snapshot_free(s);

    s = ck_parse(CK_DOC_INST(CK_INST));
    in = ck_instance(s, "s", 0);
    ck_assert_int_eq(in->weight, 1);
    ck_assert_int_eq(in->healthy, 1);
    ck_assert_ptr_null(in->zone);
    ck_assert_ptr_null(in->labels);
    ck_assert_uint_eq(in->nlabels, 0);
    ck_assert_str_eq(in->server, "127.0.0.1:80");
    mesh_snapshot_free(s);

    /* a service without instances is kept, empty */

    s = ck_parse(CK_DOC_INSTS(""));
    ck_assert_uint_eq(s->nservices, 1);
    ck_assert_uint_eq(s->services[0].ninstances, 0);
    mesh_snapshot_free(s);

    /* any health but "passing" is unhealthy; zone null is none */

    s = ck_parse(CK_DOC_INST(CK_INST ",\"health\":\"warning\","
                             "\"zone\":null"));
    in = ck_instance(s, "s", 0);
    ck_assert_int_eq(in->healthy, 0);
    ck_assert_ptr_null(in->zone);
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_whitespace_and_order_of_fields)
{
    mesh_snapshot_t        *s;
    const mesh_instance_t  *in;

    s = ck_parse(" \t\r\n{ \"policies\" : [ { \"a\" : [1, 2.5e-3, true] } ] ,"
                 "\n \"services\" : [ { \"instances\" : [ { \"port\" : 8080 ,"
                 " \"weight\" : 2 , \"address\" : \"2001:db8::1\" , \"id\" :"
                 " \"x\" } ] , \"name\" : \"n\" } ] , \"index\" : 3 }\r\n\t ");

    ck_assert_uint_eq(s->index, 3);
    ck_assert_str_eq(s->policies, "[ { \"a\" : [1, 2.5e-3, true] } ]");
    ck_assert_uint_eq(s->policies_len, strlen(s->policies));

    in = ck_instance(s, "n", 0);
    ck_assert_str_eq(in->server, "[2001:db8::1]:8080");
    ck_assert_int_eq(in->weight, 2);

    mesh_snapshot_free(s);

    s = ck_parse("{\"index\":1,\"policies\":{\"dr\":{\"host\":\"orders\"}}}");
    ck_assert_str_eq(s->policies, "{\"dr\":{\"host\":\"orders\"}}");
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_unknown_fields_are_skipped)
{
    mesh_snapshot_t        *s;
    const mesh_instance_t  *in;

    s = ck_parse("{\"version\":2,\"index\":5,\"generated\":\"now\","
                 "\"extra\":{\"a\":[{},[],{\"b\":null}],\"c\":-0.0e+10},"
                 "\"services\":[{\"name\":\"s\",\"meta\":[true,false,null],"
                 "\"instances\":[{\"id\":\"i\",\"check\":{\"http\":\"/h\"},"
                 "\"address\":\"10.0.0.1\",\"ttl\":\"10s\",\"port\":1,"
                 "\"create_index\":12345678901234567890123,"
                 "\"\\u0000odd\":\"\\u0000\",\"service\":\"s\"}]}],"
                 "\"more\":[[[[[[[[[[1]]]]]]]]]]}");

    ck_assert_uint_eq(s->index, 5);
    in = ck_instance(s, "s", 0);
    ck_assert_str_eq(in->id, "i");
    ck_assert_str_eq(in->address, "10.0.0.1");
    ck_assert_int_eq(in->port, 1);

    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_escapes_and_unicode)
{
    mesh_snapshot_t        *s;
    const mesh_instance_t  *in;

    s = ck_parse(CK_DOC_INST(
        "\"id\":\"i\","
        "\"address\":\"127.0.0.1\",\"port\":80,"
        "\"zone\":\"\\u00e9\\u4E2D\\ud83d\\ude00\","
        "\"labels\":{\"k\\u0065y\":"
        "\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\","
        "\"\\u0041\":\"\\u007f\\u0080\\u07ff\\u0800\\uffff\\udbff\\udfff\","
        "\"z\":\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\"}"));

    in = ck_instance(s, "s", 0);
    ck_assert_str_eq(in->id, "i");
    ck_assert_str_eq(in->zone, "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");

    ck_assert_uint_eq(in->nlabels, 3);
    ck_assert_str_eq(in->labels[2].value, "q\"b\\s/\b\f\n\r\t");
    ck_assert_str_eq(in->labels[0].key, "A");
    ck_assert_str_eq(in->labels[0].value,
                     "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf"
                     "\xf4\x8f\xbf\xbf");
    ck_assert_str_eq(in->labels[1].key, "key");
    ck_assert_str_eq(in->labels[1].value,
                     "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");

    mesh_snapshot_free(s);

    /* an escaped key still names a known field */

    s = ck_parse("{\"ind\\u0065x\":9}");
    ck_assert_uint_eq(s->index, 9);
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_sorts_services_and_instances)
{
    size_t                  i;
    mesh_snapshot_t        *s;
    const mesh_service_t   *svc;

    s = ck_parse("{\"index\":1,\"services\":["
                 "{\"name\":\"zeta\",\"instances\":["
                 "{\"id\":\"c\",\"address\":\"10.0.0.3\",\"port\":3},"
                 "{\"id\":\"a\",\"address\":\"10.0.0.1\",\"port\":1},"
                 "{\"id\":\"b\",\"address\":\"10.0.0.2\",\"port\":2}]},"
                 "{\"name\":\"alpha\",\"instances\":[]},"
                 "{\"name\":\"Mid\",\"instances\":[]},"
                 "{\"name\":\"mid\",\"instances\":["
                 "{\"id\":\"c\",\"address\":\"10.0.0.3\",\"port\":3}]}]}");

    ck_assert_uint_eq(s->nservices, 4);
    ck_assert_str_eq(s->services[0].name, "Mid");
    ck_assert_str_eq(s->services[1].name, "alpha");
    ck_assert_str_eq(s->services[2].name, "mid");
    ck_assert_str_eq(s->services[3].name, "zeta");

    svc = mesh_snapshot_service(s, "zeta", 4);
    ck_assert_ptr_nonnull(svc);
    ck_assert_uint_eq(svc->ninstances, 3);

    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(svc->instances[i].id[0], 'a' + (int) i);
        ck_assert_int_eq(svc->instances[i].port, (int) i + 1);
    }

    /* the same id in two services is fine */
    ck_assert_str_eq(mesh_snapshot_service(s, "mid", 3)->instances[0].id,
                     "c");

    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_service_lookup)
{
    mesh_snapshot_t  *s;

    s = ck_parse(ck_registryd_doc);

    ck_assert_ptr_eq(mesh_snapshot_service(s, "orders", 6), &s->services[0]);
    ck_assert_ptr_eq(mesh_snapshot_service(s, "users", 5), &s->services[1]);

    /* len bounds the name; prefixes and extensions do not match */

    ck_assert_ptr_eq(mesh_snapshot_service(s, "ordersXYZ", 6),
                     &s->services[0]);
    ck_assert_ptr_null(mesh_snapshot_service(s, "order", 5));
    ck_assert_ptr_null(mesh_snapshot_service(s, "ordersX", 7));
    ck_assert_ptr_null(mesh_snapshot_service(s, "a", 1));
    ck_assert_ptr_null(mesh_snapshot_service(s, "zzz", 3));
    ck_assert_ptr_null(mesh_snapshot_service(s, "", 0));
    ck_assert_ptr_null(mesh_snapshot_service(NULL, "orders", 6));

    mesh_snapshot_free(s);
    mesh_snapshot_free(NULL);
}
END_TEST


START_TEST(snapshot_index_limits)
{
    mesh_snapshot_t  *s;

    s = ck_parse("{\"index\":18446744073709551615}");
    ck_assert(s->index == UINT64_MAX);
    mesh_snapshot_free(s);

    s = ck_parse("{\"index\":0}");
    ck_assert_uint_eq(s->index, 0);
    mesh_snapshot_free(s);

    ck_parse_fails("{\"index\":18446744073709551616}", 30, "\"index\"");
    ck_parse_fails("{\"index\":99999999999999999999999}", 33, "\"index\"");
}
END_TEST


START_TEST(snapshot_duplicates_rejected)
{
    const char  *dup_svc, *dup_inst, *dup_label;

    dup_svc = "{\"index\":1,\"services\":[{\"name\":\"b\",\"instances\":[]},"
              "{\"name\":\"a\",\"instances\":[]},"
              "{\"name\":\"b\",\"instances\":[]}]}";
    ck_parse_fails(dup_svc, strlen(dup_svc), "duplicate service \"b\"");

    /* the offset is that of the second one */
    ck_parse_fails(dup_svc, strlen(dup_svc), "byte 79:");

    dup_inst = CK_DOC_INSTS("{" CK_INST "},{\"id\":\"j\",\"address\":\"::1\","
                            "\"port\":1},{" CK_INST "}");
    ck_parse_fails(dup_inst, strlen(dup_inst), "duplicate instance \"i\"");

    dup_label = CK_DOC_INST(CK_INST ",\"labels\":{\"a\":\"1\",\"b\":\"2\","
                            "\"a\":\"3\"}");
    ck_parse_fails(dup_label, strlen(dup_label), "duplicate label \"a\"");

    ck_parse_fails("{\"index\":1,\"index\":1}", 21, "duplicate field");

    /* a name with a newline in it is refused, in a one-line error */

    dup_inst = CK_DOC_INSTS("{\"id\":\"a\\nb\",\"address\":\"::1\",\"port\":1}");
    ck_parse_fails(dup_inst, strlen(dup_inst), "instance \"id\" is not");
}
END_TEST


/* rejected inputs: each with an error that names a byte offset */

typedef struct {
    const char  *text;
    size_t       len;           /* 0: strlen() */
    const char  *what;          /* in the error, or NULL */
} ck_bad_t;


static const ck_bad_t  ck_bad[] = {
    { "", 0, "end of input" },
    { " \n", 0, "end of input" },
    { "[]", 0, "not a JSON object" },
    { "null", 0, "not a JSON object" },
    { "\"index\"", 0, "not a JSON object" },
    { "{", 0, "end of input" },
    { "{}", 0, "no \"index\"" },
    { "{\"index\":1", 0, "end of input" },
    { "{\"index\":1,}", 0, "expected a string key" },
    { "{\"index\":1}}", 0, "after the snapshot" },
    { "{\"index\":1} x", 0, "byte 12:" },
    { "{\"index\":1}{}", 0, "after the snapshot" },
    { "{\"index\":-1}", 0, "\"index\" must be an integer" },
    { "{\"index\":1.5}", 0, "\"index\" must be an integer" },
    { "{\"index\":1e3}", 0, "\"index\" must be an integer" },
    { "{\"index\":\"1\"}", 0, "\"index\" must be an integer" },
    { "{\"index\":01}", 0, "leading zero" },
    { "{\"index\":null}", 0, "\"index\" must be an integer" },
    { "{index:1}", 0, "expected a string key" },
    { "{'index':1}", 0, "expected a string key" },
    { "{\"index\" 1}", 0, "expected ':'" },
    { "{\"index\":1 \"services\":[]}", 0, "expected ',' or '}'" },
    { "{\"index\":1,\"services\":{}}", 0, "\"services\" must be an array" },
    { "{\"index\":1,\"services\":null}", 0, "must be an array" },
    { "{\"index\":1,\"services\":[1]}", 0, "a service must be an object" },
    { "{\"index\":1,\"services\":[{\"instances\":[]}]}", 0,
      "without \"name\"" },
    { "{\"index\":1,\"services\":[{\"name\":\"a\"}]}", 0,
      "without \"instances\"" },
    { "{\"index\":1,\"services\":[{\"name\":\"\",\"instances\":[]}]}", 0,
      "empty service" },
    { "{\"index\":1,\"services\":[{\"name\":5,\"instances\":[]}]}", 0,
      "\"name\" must be a string" },
    { "{\"index\":1,\"services\":[{\"name\":\"a\",\"instances\":{}}]}", 0,
      "\"instances\" must be an array" },
    { CK_DOC_INSTS("\"i\""), 0, "an instance must be an object" },
    { CK_DOC_INST("\"address\":\"127.0.0.1\",\"port\":80"), 0,
      "without \"id\"" },
    { CK_DOC_INST("\"id\":\"i\",\"port\":80"), 0, "without \"address\"" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"127.0.0.1\""), 0,
      "without \"port\"" },
    { CK_DOC_INST("\"id\":\"\",\"address\":\"127.0.0.1\",\"port\":80"), 0,
      "empty instance" },
    { CK_DOC_INST("\"id\":1,\"address\":\"127.0.0.1\",\"port\":80"), 0,
      "\"id\" must be a string" },
    /* names reach log lines and Prometheus labels: the rule holds */
    { CK_DOC_INST("\"id\":\"a\\\"b\",\"address\":\"::1\",\"port\":80"), 0,
      "instance \"id\" is not [A-Za-z0-9]" },
    { CK_DOC_INST("\"id\":\"-a\",\"address\":\"::1\",\"port\":80"), 0,
      "instance \"id\" is not" },
    { "{\"index\":1,\"services\":[{\"name\":\"a b\",\"instances\":[]}]}",
      0, "service \"name\" is not" },
    { "{\"index\":1,\"delta\":true,\"services\":[{\"name\":\"a\","
      "\"instances\":[],\"removed\":[\"x}\"]}]}", 0,
      "a removed id is not" },
    { CK_DOC_INST(CK_INST ",\"port\":81"), 0, "duplicate field \"port\"" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"127.0.0.1\",\"port\":0"), 0,
      "\"port\" must be an integer 1..65535" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"127.0.0.1\",\"port\":65536"),
      0, "1..65535" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"127.0.0.1\",\"port\":-80"), 0,
      "1..65535" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"127.0.0.1\",\"port\":\"80\""),
      0, "\"port\" must be an integer" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"127.0.0.1\",\"port\":80.0"), 0,
      "1..65535" },
    { CK_DOC_INST(CK_INST ",\"weight\":0"), 0, "1..1000" },
    { CK_DOC_INST(CK_INST ",\"weight\":1001"), 0, "1..1000" },
    { CK_DOC_INST(CK_INST ",\"weight\":1.0"), 0, "1..1000" },
    { CK_DOC_INST(CK_INST ",\"weight\":true"), 0, "must be an integer" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"localhost\",\"port\":80"), 0,
      "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"[::1]\",\"port\":80"), 0,
      "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"1.2.3.4:80\",\"port\":80"), 0,
      "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"256.1.1.1\",\"port\":80"), 0,
      "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\"\",\"port\":80"), 0,
      "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":\" 1.2.3.4\",\"port\":80"), 0,
      "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":"
                  "\"1111:2222:3333:4444:5555:6666:7777:8888:9999\","
                  "\"port\":80"), 0, "not an IP address" },
    { CK_DOC_INST("\"id\":\"i\",\"address\":null,\"port\":80"), 0,
      "\"address\" must be a string" },
    { CK_DOC_INST(CK_INST ",\"labels\":[]"), 0, "must be an object" },
    { CK_DOC_INST(CK_INST ",\"labels\":{\"a\":1}"), 0,
      "a label value must be a string" },
    { CK_DOC_INST(CK_INST ",\"health\":1"), 0, "\"health\" must be a string" },
    { CK_DOC_INST(CK_INST ",\"zone\":5"), 0, "\"zone\" must be a string" },
    { CK_DOC_INST("\"id\":\"a\nb\",\"address\":\"::1\",\"port\":80"), 0,
      "control character" },
    { CK_DOC_INST("\"id\":\"a\\xb\",\"address\":\"::1\",\"port\":80"), 0,
      "invalid escape" },
    { CK_DOC_INST("\"id\":\"a\\u12G4\",\"address\":\"::1\",\"port\":80"), 0,
      "invalid \\u escape" },
    { CK_DOC_INST("\"id\":\"\\ud800\",\"address\":\"::1\",\"port\":80"), 0,
      "lone high surrogate" },
    { CK_DOC_INST("\"id\":\"\\udc00\",\"address\":\"::1\",\"port\":80"), 0,
      "lone low surrogate" },
    { CK_DOC_INST("\"id\":\"\\ud800\\u0041\",\"address\":\"::1\",\"port\":1"),
      0, "lone high surrogate" },
    { CK_DOC_INST("\"id\":\"\\ud800\\ud800\",\"address\":\"::1\",\"port\":1"),
      0, "lone high surrogate" },
    { CK_DOC_INST("\"id\":\"a\\u0000\",\"address\":\"::1\",\"port\":80"), 0,
      "\"id\" holds \\u0000" },
    { CK_DOC_INST(CK_INST ",\"labels\":{\"a\\u0000\":\"1\"}"), 0,
      "a label name holds \\u0000" },
    { CK_DOC_INST(CK_INST ",\"labels\":{\"a\":\"\\u0000\"}"), 0,
      "a label value holds \\u0000" },
    { CK_DOC_INST("\"id\":\"a\xff\",\"address\":\"::1\",\"port\":80"), 0,
      "invalid UTF-8" },
    { CK_DOC_INST("\"id\":\"a\xc0\xaf\",\"address\":\"::1\",\"port\":80"), 0,
      "invalid UTF-8" },
    { CK_DOC_INST("\"id\":\"a\xed\xa0\x80\",\"address\":\"::1\",\"port\":80"),
      0, "invalid UTF-8" },
    { CK_DOC_INST("\"id\":\"a\xf4\x90\x80\x80\",\"address\":\"::1\","
                  "\"port\":80"), 0, "invalid UTF-8" },
    { "{\"index\":1,\"x\":\"\xe4\xb8", 0, "invalid UTF-8" },
    { "{\"index\":1,\"x\":\"abc", 0, "unterminated string" },
    { "{\"index\":1,\"x\":\"abc\\", 0, "unterminated string" },
    { "{\"index\":1,\"x\":\"\\u12", 0, "invalid \\u escape" },
    { "{\"index\":1,\"x\":tru}", 0, "expected a value" },
    { "{\"index\":1,\"x\":nul}", 0, "expected a value" },
    { "{\"index\":1,\"x\":True}", 0, "expected a value" },
    { "{\"index\":1,\"x\":-}", 0, "invalid number" },
    { "{\"index\":1,\"x\":1.}", 0, "invalid number" },
    { "{\"index\":1,\"x\":1e}", 0, "invalid number" },
    { "{\"index\":1,\"x\":1e+}", 0, "invalid number" },
    { "{\"index\":1,\"x\":+1}", 0, "expected a value" },
    { "{\"index\":1,\"x\":.5}", 0, "expected a value" },
    { "{\"index\":1,\"x\":0x10}", 0, "expected ',' or '}'" },
    { "{\"index\":1,\"x\":[1,]}", 0, "expected a value" },
    { "{\"index\":1,\"x\":[1 2]}", 0, "expected ',' or ']'" },
    { "{\"index\":1,\"x\":[,1]}", 0, "expected a value" },
    { "{\"index\":1,\"x\":{\"a\"}}", 0, "expected ':'" },
    { "{\"index\":1,\"x\":{1:2}}", 0, "expected a string key" },
    { "{\"index\":1,\"x\":\"\\ud800\"}", 0, "lone high surrogate" },
    { "{\"index\":1,\"policies\":\"x\"}", 0, "\"policies\" must be" },
    { "{\"index\":1,\"policies\":[}", 0, "expected a value" },
    { "{\"index\":1,\"policies\":[],\"policies\":[]}", 0, "duplicate" },
    { "{\"index\":1,\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0, "nested deeper than 64" },
    { "{\"index\":1,\0\"x\":1}", 17, "expected a string key" },
    { "{\"index\":1}\0", 12, "after the snapshot" },
    { "\xef\xbb\xbf{\"index\":1}", 0, "not a JSON object" },
};


START_TEST(snapshot_malformed_rejected)
{
    const ck_bad_t  *b;

    b = &ck_bad[_i];

    ck_parse_fails(b->text, b->len ? b->len : strlen(b->text), b->what);
}
END_TEST


START_TEST(snapshot_error_offsets)
{
    ck_parse_fails("{\"index\":1,\"x\":[1,]}", 19, "byte 18:");
    ck_parse_fails(CK_DOC_INST("\"id\":\"i\",\"address\":\"::1\",\"port\":0"),
                   strlen(CK_DOC_INST("\"id\":\"i\",\"address\":\"::1\","
                                      "\"port\":0")), "byte 81:");
    ck_parse_fails("  {\"index\":1,\"x\":\"\\q\"}", 23, "byte 18:");
}
END_TEST


START_TEST(snapshot_error_buffer_small_or_null)
{
    char              err[8];
    mesh_snapshot_t  *s;

    memset(err, 'z', sizeof(err));
    s = mesh_snapshot_parse("{", 1, err, sizeof(err));
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "snapsho");

    s = mesh_snapshot_parse("{", 1, NULL, 0);
    ck_assert_ptr_null(s);

    s = mesh_snapshot_parse("{", 1, err, 0);
    ck_assert_ptr_null(s);

    s = mesh_snapshot_parse(NULL, 0, err, 1);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "");
}
END_TEST


START_TEST(snapshot_truncated_at_every_offset)
{
    char              err[MESH_ERR_LEN];
    size_t            k, len;
    mesh_snapshot_t  *s;

    len = strlen(ck_registryd_doc);

    /* every prefix short of the closing '}' is an error */

    for (k = 0; k < len - 1; k++) {
        err[0] = '\0';
        s = ck_parse_len(ck_registryd_doc, k, err, sizeof(err));
        ck_assert_msg(s == NULL, "a prefix of %zu bytes parsed", k);
        ck_assert_msg(strncmp(err, "snapshot: byte ", 15) == 0,
                      "prefix %zu: \"%s\"", k, err);
    }

    for ( /* void */ ; k <= len; k++) {
        s = ck_parse_len(ck_registryd_doc, k, err, sizeof(err));
        ck_assert_msg(s != NULL, "%zu bytes: %s", k, err);
        mesh_snapshot_free(s);
    }
}
END_TEST


START_TEST(snapshot_mutations_never_crash)
{
    char              err[MESH_ERR_LEN], buf[1024];
    size_t            i, len, k, m;
    uint32_t          seed;
    mesh_snapshot_t  *s;
    static const char pick[] = "{}[]\",:\\u0aA1-e.+ \x80\xc3\xed\xf0\xff\0";

    seed = 77;

    for (i = 0; i < 20000; i++) {
        len = strlen(ck_registryd_doc);
        memcpy(buf, ck_registryd_doc, len);

        for (m = 1 + ck_xorshift32(&seed) % 4; m; m--) {
            k = ck_xorshift32(&seed) % len;

            switch (ck_xorshift32(&seed) % 3) {

            case 0:
                buf[k] = pick[ck_xorshift32(&seed) % (sizeof(pick) - 1)];
                break;

            case 1:
                memmove(buf + k, buf + k + 1, len - k - 1);
                len--;
                break;

            default:
                if (len < sizeof(buf)) {
                    memmove(buf + k + 1, buf + k, len - k);
                    buf[k] = pick[ck_xorshift32(&seed)
                                  % (sizeof(pick) - 1)];
                    len++;
                }
            }
        }

        err[0] = '\0';
        s = ck_parse_len(buf, len, err, sizeof(err));

        if (s) {
            mesh_snapshot_free(s);

        } else {
            ck_assert_msg(strncmp(err, "snapshot: byte ", 15) == 0,
                          "\"%s\"", err);
        }
    }
}
END_TEST


static size_t
ck_nested(char *doc, size_t n)
{
    size_t  i, len;

    len = (size_t) sprintf(doc, "{\"index\":1,\"x\":");

    for (i = 0; i < n; i++) {
        doc[len++] = (i % 2) ? '[' : '{';

        if (i % 2 == 0) {
            len += (size_t) sprintf(doc + len, "\"k\":");
        }
    }

    len += (size_t) sprintf(doc + len, "null");

    for (i = n; i > 0; i--) {
        doc[len++] = ((i - 1) % 2) ? ']' : '}';
    }

    doc[len++] = '}';

    return len;
}


START_TEST(snapshot_deep_nesting_refused)
{
    char              err[MESH_ERR_LEN];
    char             *doc;
    size_t            len;
    mesh_snapshot_t  *s;

    doc = malloc(64 + 6 * 100000);
    ck_assert_ptr_nonnull(doc);

    /* 63 levels under the top object are fine, 64 are not */

    len = ck_nested(doc, 63);
    s = ck_parse_len(doc, len, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    mesh_snapshot_free(s);

    len = ck_nested(doc, 64);
    ck_parse_fails(doc, len, "nested deeper than 64");

    /* and 100,000 stop there too, long before the stack would */

    len = ck_nested(doc, 100000);
    ck_parse_fails(doc, len, "nested deeper than 64");

    free(doc);
}
END_TEST


/* registryd's format for n services of m instances */

static char *
ck_generate(size_t nsvc, size_t ninst, int reversed, size_t *lenp)
{
    char    *doc, *p;
    size_t   i, k, si, ki, size;

    size = 64 + nsvc * 64 + nsvc * ninst * 200;
    doc = malloc(size);
    ck_assert_ptr_nonnull(doc);

    p = doc;
    p += sprintf(p, "{\"index\":123456,\"services\":[");

    for (i = 0; i < nsvc; i++) {
        si = reversed ? nsvc - 1 - i : i;

        p += sprintf(p, "%s\n{\"name\":\"service-%04zu\",\"instances\":[",
                     i ? "]}," : "", si);

        for (k = 0; k < ninst; k++) {
            ki = reversed ? ninst - 1 - k : k;

            p += sprintf(p, "%s\n{\"id\":\"inst-%06zu\",\"address\":"
                         "\"10.%zu.%zu.%zu\",\"port\":%zu,\"weight\":%zu,"
                         "\"zone\":\"zone-%c\",\"labels\":{"
                         "\"version\":\"v%zu\",\"team\":\"payments\"},"
                         "\"health\":\"%s\"}",
                         k ? "," : "", ki, (si + (ki >> 16)) % 256,
                         (ki >> 8) & 0xff, ki & 0xff,
                         1024 + ki % 60000, 1 + ki % 1000,
                         (char) ('a' + ki % 3),
                         ki % 4, ki % 10 ? "passing" : "critical");
        }
    }

    p += sprintf(p, nsvc ? "]}],\n\"policies\":[]}\n"
                         : "],\"policies\":[]}\n");

    ck_assert_uint_lt((size_t) (p - doc), size);
    *lenp = p - doc;

    return doc;
}


static void
ck_check_large(mesh_snapshot_t *s, size_t nsvc, size_t ninst)
{
    char                    name[32];
    size_t                  i, k, total;
    const mesh_service_t   *svc;
    const mesh_instance_t  *in;

    ck_assert_uint_eq(s->index, 123456);
    ck_assert_uint_eq(s->nservices, nsvc);

    total = 0;

    for (i = 0; i < nsvc; i++) {
        snprintf(name, sizeof(name), "service-%04zu", i);
        svc = mesh_snapshot_service(s, name, strlen(name));
        ck_assert_ptr_nonnull(svc);
        ck_assert_ptr_eq(svc, &s->services[i]);
        ck_assert_uint_eq(svc->ninstances, ninst);

        for (k = 0; k < ninst; k++) {
            in = &svc->instances[k];
            snprintf(name, sizeof(name), "inst-%06zu", k);
            ck_assert_str_eq(in->id, name);
            ck_assert_int_eq(in->port, 1024 + (int) (k % 60000));
            ck_assert_int_eq(in->weight, 1 + (int) (k % 1000));
            ck_assert_int_eq(in->healthy, (k % 10) != 0);
            ck_assert_uint_eq(in->nlabels, 2);
            ck_assert_str_eq(in->labels[0].key, "team");
            total++;
        }
    }

    ck_assert_uint_eq(total, nsvc * ninst);
}


START_TEST(snapshot_100k_instances_parse)
{
    char              err[MESH_ERR_LEN];
    char             *doc;
    size_t            len;
    mesh_snapshot_t  *s;

    doc = ck_generate(100, 1000, 0, &len);
    ck_assert_uint_gt(len, 10 * 1000 * 1000);

    s = mesh_snapshot_parse(doc, len, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    free(doc);

    ck_check_large(s, 100, 1000);
    mesh_snapshot_free(s);

    /* the same, every list backwards: the parser sorts */

    doc = ck_generate(100, 1000, 1, &len);
    s = mesh_snapshot_parse(doc, len, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    free(doc);

    ck_check_large(s, 100, 1000);
    mesh_snapshot_free(s);

    /* one service of 100,000 */

    doc = ck_generate(1, 100000, 1, &len);
    s = mesh_snapshot_parse(doc, len, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
    free(doc);

    ck_assert_uint_eq(s->services[0].ninstances, 100000);
    ck_assert_str_eq(s->services[0].instances[99999].id, "inst-099999");
    mesh_snapshot_free(s);
}
END_TEST


START_TEST(snapshot_many_labels_and_long_strings)
{
    char                    err[MESH_ERR_LEN];
    char                   *doc, *p;
    size_t                  i;
    mesh_snapshot_t        *s;
    const mesh_instance_t  *in;

    doc = malloc(8 * 1024 * 1024);
    ck_assert_ptr_nonnull(doc);

    /* 20,000 labels, backwards; a zone of 1,000,000 escaped characters */

    p = doc;
    p += sprintf(p, "{\"index\":1,\"services\":[{\"name\":\"s\",\"instances\":"
                 "[{\"address\":\"::1\",\"port\":1,\"labels\":{");

    for (i = 0; i < 20000; i++) {
        p += sprintf(p, "%s\"k%05zu\":\"v%zu\"", i ? "," : "", 19999 - i, i);
    }

    p += sprintf(p, "},\"id\":\"i\",\"zone\":\"");

    for (i = 0; i < 1000000; i++) {
        p += sprintf(p, "%s", i % 2 ? "\\u00e9" : "a");
    }

    p += sprintf(p, "\"}]}]}");

    s = ck_parse_len(doc, p - doc, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);

    in = ck_instance(s, "s", 0);
    ck_assert_uint_eq(in->nlabels, 20000);
    ck_assert_str_eq(in->labels[0].key, "k00000");
    ck_assert_str_eq(in->labels[0].value, "v19999");
    ck_assert_str_eq(in->labels[19999].key, "k19999");
    ck_assert_uint_eq(strlen(in->zone), 1500000);
    ck_assert_str_eq(in->zone + 1499997, "a\xc3\xa9");

    mesh_snapshot_free(s);
    free(doc);
}
END_TEST


Suite *
snapshot_suite(void)
{
    TCase  *tc;
    Suite  *s;

    s = suite_create("snapshot");

    tc = tcase_create("good");
    tcase_add_test(tc, snapshot_registryd_format_parses);
    tcase_add_test(tc, snapshot_minimal_gets_defaults);
    tcase_add_test(tc, snapshot_whitespace_and_order_of_fields);
    tcase_add_test(tc, snapshot_unknown_fields_are_skipped);
    tcase_add_test(tc, snapshot_escapes_and_unicode);
    tcase_add_test(tc, snapshot_sorts_services_and_instances);
    tcase_add_test(tc, snapshot_service_lookup);
    tcase_add_test(tc, snapshot_index_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad");
    tcase_add_test(tc, snapshot_duplicates_rejected);
    tcase_add_loop_test(tc, snapshot_malformed_rejected, 0,
                        sizeof(ck_bad) / sizeof(ck_bad[0]));
    tcase_add_test(tc, snapshot_error_offsets);
    tcase_add_test(tc, snapshot_error_buffer_small_or_null);
    tcase_add_test(tc, snapshot_truncated_at_every_offset);
    tcase_add_test(tc, snapshot_mutations_never_crash);
    tcase_add_test(tc, snapshot_deep_nesting_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("large");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, snapshot_100k_instances_parse);
    tcase_add_test(tc, snapshot_many_labels_and_long_strings);
    suite_add_tcase(s, tc);

    return s;
}

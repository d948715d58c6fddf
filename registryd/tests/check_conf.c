/*
 * check_conf: defaults, rd_conf_set and YAML files (the token files:
 * check_auth.c).
 */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "rd_conf.h"

static char       dir[PATH_MAX];
static rd_conf_t  conf;


static void
setup(void)
{
    ck_tmpdir(dir, sizeof(dir));
    rd_conf_init(&conf);
}


static void
teardown(void)
{
    rd_conf_free(&conf);
    ck_rmrf(dir);
}


/* load text as a config file; returns rd_conf_load_file's result */
static int
load_text(const char *text, char *path, char *err)
{
    ck_write_file(dir, "registryd.yaml", text, path, PATH_MAX);
    err[0] = '\0';
    return rd_conf_load_file(&conf, path, err);
}


static void
assert_err_at(const char *err, const char *path, int line, const char *what)
{
    char  prefix[PATH_MAX + 32];

    snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                  "error \"%s\" does not start with \"%s\"", err, prefix);
    ck_assert_msg(strstr(err, what) != NULL,
                  "error \"%s\" does not mention \"%s\"", err, what);
}


START_TEST(conf_init_fills_documented_defaults)
{
    ck_assert_str_eq(conf.listen, "127.0.0.1:7770");
    ck_assert_str_eq(conf.data_dir, "./var/registryd");
    ck_assert_ptr_null(conf.token_file);
    ck_assert_str_eq(conf.log_level, "info");
    ck_assert_int_eq(conf.max_body, 1048576);
    ck_assert_int_eq(conf.ttl_scan_interval, 100);
    ck_assert_int_eq(conf.max_wait, 300000);
    ck_assert_int_eq(conf.default_wait, 30000);
    ck_assert_int_eq(conf.connection_limit, 16384);
    ck_assert_int_eq(conf.threads, 2);
}
END_TEST


START_TEST(conf_set_unknown_option_fails_naming_it)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "lisen", "1.2.3.4:5", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "\"lisen\""));
}
END_TEST


START_TEST(conf_set_listen_accepts_ip_hostport_rejects_hostname)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "listen", "0.0.0.0:80", err), 0);
    ck_assert_str_eq(conf.listen, "0.0.0.0:80");
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "[::1]:7770", err), 0);
    ck_assert_str_eq(conf.listen, "[::1]:7770");

    ck_assert_int_eq(rd_conf_set(&conf, "listen", "localhost:7770", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "listen"));
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "127.0.0.1", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "127.0.0.1:0", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "127.0.0.1:65536", err),
                     -1);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "", err), -1);
    /* an IPv6 literal needs its brackets ("::1:7770" reads two ways) */
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "::1:7770", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "[127.0.0.1]:7770", err),
                     -1);

    /* a rejected value leaves the last good one */
    ck_assert_str_eq(conf.listen, "[::1]:7770");
}
END_TEST


START_TEST(conf_set_strings_reject_empty)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "data_dir", "/var/lib/r", err), 0);
    ck_assert_str_eq(conf.data_dir, "/var/lib/r");
    ck_assert_int_eq(rd_conf_set(&conf, "data_dir", "", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "empty"));
    ck_assert_str_eq(conf.data_dir, "/var/lib/r");

    ck_assert_int_eq(rd_conf_set(&conf, "token_file", "/etc/tok", err), 0);
    ck_assert_str_eq(conf.token_file, "/etc/tok");
}
END_TEST


START_TEST(conf_set_log_level_accepts_known_levels_only)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "log_level", "debug", err), 0);
    ck_assert_str_eq(conf.log_level, "debug");
    ck_assert_int_eq(rd_conf_set(&conf, "log_level", "warn", err), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "log_level", "error", err), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "log_level", "info", err), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "log_level", "verbose", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "verbose"));
    ck_assert_str_eq(conf.log_level, "info");
}
END_TEST


START_TEST(conf_set_size_bounds_1k_to_64m)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "max_body", "1k", err), 0);
    ck_assert_int_eq(conf.max_body, 1024);
    ck_assert_int_eq(rd_conf_set(&conf, "max_body", "64m", err), 0);
    ck_assert_int_eq(conf.max_body, 64 * 1048576);
    ck_assert_int_eq(rd_conf_set(&conf, "max_body", "1023", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "out of range"));
    ck_assert_int_eq(rd_conf_set(&conf, "max_body", "65m", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "max_body", "10x", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "invalid value"));
    ck_assert_int_eq(conf.max_body, 64 * 1048576);
}
END_TEST


START_TEST(conf_set_duration_bounds_and_type)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "ttl_scan_interval", "10ms", err), 0);
    ck_assert_int_eq(conf.ttl_scan_interval, 10);
    ck_assert_int_eq(rd_conf_set(&conf, "ttl_scan_interval", "10s", err), 0);
    ck_assert_int_eq(conf.ttl_scan_interval, 10000);
    ck_assert_int_eq(rd_conf_set(&conf, "ttl_scan_interval", "9ms", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "ttl_scan_interval", "11s", err),
                     -1);
    ck_assert_int_eq(rd_conf_set(&conf, "ttl_scan_interval", "100", err),
                     -1);
    ck_assert_int_eq(conf.ttl_scan_interval, 10000);

    ck_assert_int_eq(rd_conf_set(&conf, "max_wait", "1h", err), 0);
    ck_assert_int_eq(conf.max_wait, 3600000);
    ck_assert_int_eq(rd_conf_set(&conf, "max_wait", "61m", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "default_wait", "0s", err), 0);
    ck_assert_int_eq(conf.default_wait, 0);
}
END_TEST


START_TEST(conf_set_int_rejects_units_and_range)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "threads", "1", err), 0);
    ck_assert_int_eq(conf.threads, 1);
    ck_assert_int_eq(rd_conf_set(&conf, "threads", "64", err), 0);
    ck_assert_int_eq(conf.threads, 64);
    ck_assert_int_eq(rd_conf_set(&conf, "threads", "0", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "threads", "65", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "threads", "two", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "connection_limit", "1k", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "invalid value"));
    ck_assert_int_eq(rd_conf_set(&conf, "connection_limit", "15", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "connection_limit", "1000000", err),
                     0);
    ck_assert_int_eq(conf.connection_limit, 1000000);
    ck_assert_int_eq(conf.threads, 64);
}
END_TEST


START_TEST(conf_load_good_file_sets_every_key)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "# registryd\n"
        "listen: \"[::1]:7771\"\n"
        "data_dir: /srv/registry\n"
        "token_file: /etc/registryd/token\n"
        "log_level: warn\n"
        "max_body: 64k\n"
        "ttl_scan_interval: 250ms\n"
        "max_wait: 2m\n"
        "default_wait: 10s\n"
        "connection_limit: 100\n"
        "threads: 4\n", path, err), 0);

    ck_assert_str_eq(conf.listen, "[::1]:7771");
    ck_assert_str_eq(conf.data_dir, "/srv/registry");
    ck_assert_str_eq(conf.token_file, "/etc/registryd/token");
    ck_assert_str_eq(conf.log_level, "warn");
    ck_assert_int_eq(conf.max_body, 65536);
    ck_assert_int_eq(conf.ttl_scan_interval, 250);
    ck_assert_int_eq(conf.max_wait, 120000);
    ck_assert_int_eq(conf.default_wait, 10000);
    ck_assert_int_eq(conf.connection_limit, 100);
    ck_assert_int_eq(conf.threads, 4);
}
END_TEST


START_TEST(conf_store_options_check_their_values)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_str_eq(conf.store, "sqlite");
    ck_assert_str_eq(conf.etcd_prefix, "/ngx-mesh/");
    ck_assert_int_eq(conf.etcd_timeout, 2000);
    ck_assert_int_eq(conf.etcd_max_txn_ops, 128);
    ck_assert_ptr_null(conf.etcd_endpoints);
    ck_assert_int_eq(rd_conf_check(&conf, err), 0);

    ck_assert_int_eq(rd_conf_set(&conf, "store", "postgres", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "sqlite, etcd"));

    /* etcd without endpoints is refused as a whole */
    ck_assert_int_eq(rd_conf_set(&conf, "store", "etcd", err), 0);
    ck_assert_int_eq(rd_conf_check(&conf, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "etcd_endpoints"));

    ck_assert_int_eq(rd_conf_set(&conf, "etcd_endpoints",
                                 "http://127.0.0.1:2379,"
                                 "https://10.0.0.2:2379", err), 0);
    ck_assert_int_eq(rd_conf_check(&conf, err), 0);

    ck_assert_int_eq(rd_conf_set(&conf, "etcd_endpoints", "127.0.0.1:2379",
                                 err), -1);
    ck_assert_ptr_nonnull(strstr(err, "etcd_endpoints"));
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_endpoints",
                                 "http://127.0.0.1:2379/v3", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_endpoints",
                                 "http://a:1,,http://b:2", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_endpoints", "", err), -1);
    /* a rejected value leaves the last good one */
    ck_assert_str_eq(conf.etcd_endpoints,
                     "http://127.0.0.1:2379,https://10.0.0.2:2379");

    /* a prefix is a folder of keys */
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_prefix", "/mesh/prod", err),
                     0);
    ck_assert_str_eq(conf.etcd_prefix, "/mesh/prod/");
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_prefix", "mesh/", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_prefix", "/a b/", err), -1);

    ck_assert_int_eq(rd_conf_set(&conf, "etcd_max_txn_ops", "2", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "etcd_timeout", "50ms", err), -1);
}
END_TEST


START_TEST(conf_trusted_networks_and_exposure)
{
    char         err[RD_ERR_LEN] = "";
    mesh_cidr_t  nets[8];

    /* loopback by default: protected mode */
    ck_assert_str_eq(conf.trusted_networks, "127.0.0.0/8,::1/128");
    ck_assert_uint_eq(rd_conf_networks(conf.trusted_networks, nets, 8), 2);

    ck_assert_int_eq(rd_conf_set(&conf, "trusted_networks",
                                 "10.0.0.0/8,192.168.1.7,fd00::/8", err), 0);
    ck_assert_uint_eq(rd_conf_networks(conf.trusted_networks, nets, 8), 3);
    ck_assert_int_eq(nets[1].bits, 32);

    ck_assert_int_eq(rd_conf_set(&conf, "trusted_networks", "10.0.0.0/33",
                                 err), -1);
    ck_assert_ptr_nonnull(strstr(err, "is not a network"));
    ck_assert_int_eq(rd_conf_set(&conf, "trusted_networks", "", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "trusted_networks", "lan", err), -1);

    /* listening elsewhere than loopback is worth a warning */
    ck_assert_int_eq(rd_conf_exposed(&conf), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "[::1]:7770", err), 0);
    ck_assert_int_eq(rd_conf_exposed(&conf), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "127.0.0.2:7770", err), 0);
    ck_assert_int_eq(rd_conf_exposed(&conf), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "0.0.0.0:7770", err), 0);
    ck_assert_int_eq(rd_conf_exposed(&conf), 1);
    ck_assert_int_eq(rd_conf_set(&conf, "listen", "10.1.2.3:7770", err), 0);
    ck_assert_int_eq(rd_conf_exposed(&conf), 1);
}
END_TEST


/* the DNS suffixes of policy hosts */
START_TEST(conf_domain_suffixes)
{
    char  err[RD_ERR_LEN] = "";

    ck_assert_str_eq(conf.domain_suffixes, "*.svc.cluster.local");
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes",
                                 "*.svc.corp.internal,mesh.example", err), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes", "", err), 0);
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes", "Corp.Example",
                                 err), -1);
    ck_assert_ptr_nonnull(strstr(err, "is not a DNS suffix"));
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes", "a..b", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes", "*.*.x", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes", "x,", err), -1);
    ck_assert_int_eq(rd_conf_set(&conf, "domain_suffixes", "-x.y", err), -1);
}
END_TEST


/* HTTPS takes a certificate and its key, both or neither */
START_TEST(conf_check_tls_cert_and_key_go_together)
{
    char  path[PATH_MAX], err[RD_ERR_LEN] = "";

    ck_assert_ptr_null(conf.tls_cert);
    ck_assert_ptr_null(conf.tls_key);
    ck_assert_ptr_null(conf.tls_client_ca);
    ck_assert_int_eq(rd_conf_check(&conf, err), 0);

    ck_assert_int_eq(rd_conf_set(&conf, "tls_cert", "/etc/r/cert.pem", err),
                     0);
    ck_assert_int_eq(rd_conf_check(&conf, err), -1);
    ck_assert_str_eq(err, "tls_cert and tls_key go together: tls_cert is "
                     "set, tls_key is not");

    ck_assert_int_eq(rd_conf_set(&conf, "tls_key", "/etc/r/key.pem", err),
                     0);
    ck_assert_int_eq(rd_conf_check(&conf, err), 0);

    /* the key alone, from a config file */
    rd_conf_free(&conf);
    rd_conf_init(&conf);
    ck_assert_int_eq(load_text("tls_key: /etc/r/key.pem\n", path, err), 0);
    ck_assert_str_eq(conf.tls_key, "/etc/r/key.pem");
    ck_assert_int_eq(rd_conf_check(&conf, err), -1);
    ck_assert_str_eq(err, "tls_cert and tls_key go together: tls_key is "
                     "set, tls_cert is not");

    ck_assert_int_eq(rd_conf_set(&conf, "tls_cert", "", err), -1);
    ck_assert_ptr_nonnull(strstr(err, "empty"));
}
END_TEST


/* client certificates are asked for during a TLS handshake only */
START_TEST(conf_check_tls_client_ca_needs_https)
{
    char  path[PATH_MAX], err[RD_ERR_LEN] = "";

    ck_assert_int_eq(rd_conf_set(&conf, "tls_client_ca", "/etc/r/ca.pem",
                                 err), 0);
    ck_assert_int_eq(rd_conf_check(&conf, err), -1);
    ck_assert_str_eq(err, "tls_client_ca needs tls_cert and tls_key: "
                     "client certificates come with HTTPS");

    /* with the key but not the certificate, the pair is what is wrong */
    ck_assert_int_eq(rd_conf_set(&conf, "tls_key", "/etc/r/key.pem", err),
                     0);
    ck_assert_int_eq(rd_conf_check(&conf, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "tls_key is set, tls_cert is not"));

    rd_conf_free(&conf);
    rd_conf_init(&conf);
    ck_assert_int_eq(load_text("tls_cert: /etc/r/cert.pem\n"
                               "tls_key: /etc/r/key.pem\n"
                               "tls_client_ca: /etc/r/ca.pem\n", path, err),
                     0);
    ck_assert_str_eq(conf.tls_client_ca, "/etc/r/ca.pem");
    ck_assert_int_eq(rd_conf_check(&conf, err), 0);
}
END_TEST


START_TEST(conf_load_etcd_endpoints_as_a_yaml_sequence)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "store: etcd\n"
        "etcd_endpoints:\n"
        "  - http://127.0.0.1:2379\n"
        "  - http://127.0.0.1:22379\n"
        "etcd_prefix: /mesh/\n"
        "log_level: warn\n", path, err), 0);

    ck_assert_str_eq(conf.store, "etcd");
    ck_assert_str_eq(conf.etcd_endpoints,
                     "http://127.0.0.1:2379,http://127.0.0.1:22379");
    ck_assert_str_eq(conf.etcd_prefix, "/mesh/");
    ck_assert_str_eq(conf.log_level, "warn");

    ck_assert_int_eq(load_text(
        "etcd_endpoints: [http://a:1, http://b:2]\n", path, err), 0);
    ck_assert_str_eq(conf.etcd_endpoints, "http://a:1,http://b:2");

    /* a bad member names the file, the line and the option */
    ck_assert_int_eq(load_text(
        "etcd_endpoints:\n"
        "  - http://a:1\n"
        "  - b:2\n", path, err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, "etcd_endpoints"));

    /* other options still take scalars only */
    ck_assert_int_eq(load_text("log_level: [warn]\n", path, err), -1);
}
END_TEST


START_TEST(conf_load_empty_file_keeps_defaults)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text("", path, err), 0);
    ck_assert_str_eq(conf.listen, "127.0.0.1:7770");

    ck_assert_int_eq(load_text("# only a comment\n", path, err), 0);
    ck_assert_int_eq(conf.threads, 2);
}
END_TEST


START_TEST(conf_load_unknown_key_reports_file_and_line)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "listen: 127.0.0.1:7000\n"
        "# a comment\n"
        "\n"
        "threads: 3\n"
        "max_bodyy: 1m\n"
        "log_level: debug\n", path, err), -1);

    assert_err_at(err, path, 5, "unknown option \"max_bodyy\"");
}
END_TEST


START_TEST(conf_load_bad_value_reports_file_line_and_option)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "listen: 127.0.0.1:7000\n"
        "ttl_scan_interval: 10x\n", path, err), -1);
    assert_err_at(err, path, 2, "ttl_scan_interval");

    ck_assert_int_eq(load_text(
        "threads: 4\n"
        "log_level: info\n"
        "threads: 100\n", path, err), -1);
    assert_err_at(err, path, 3, "out of range");

    ck_assert_int_eq(load_text(
        "listen: localhost:7770\n", path, err), -1);
    assert_err_at(err, path, 1, "listen");
}
END_TEST


START_TEST(conf_load_nested_mapping_is_rejected)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "threads: 2\n"
        "listen:\n"
        "  host: 127.0.0.1\n"
        "  port: 7770\n", path, err), -1);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(err, "listen"));
    ck_assert_ptr_nonnull(strstr(err, "scalar"));
}
END_TEST


START_TEST(conf_load_sequence_value_is_rejected)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "listen: [127.0.0.1, 7770]\n", path, err), -1);
    assert_err_at(err, path, 1, "scalar");

    ck_assert_int_eq(load_text(
        "- listen\n", path, err), -1);
    assert_err_at(err, path, 1, "mapping");
}
END_TEST


START_TEST(conf_load_top_level_scalar_is_rejected)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text("just text\n", path, err), -1);
    assert_err_at(err, path, 1, "mapping");
}
END_TEST


START_TEST(conf_load_invalid_yaml_reports_file_and_line)
{
    char  path[PATH_MAX], err[RD_ERR_LEN];

    ck_assert_int_eq(load_text(
        "threads: 2\n"
        "listen: \"127.0.0.1:7770\n", path, err), -1);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(err, ":"));
}
END_TEST


START_TEST(conf_load_missing_file_fails_naming_it)
{
    char  path[PATH_MAX], err[RD_ERR_LEN] = "";

    snprintf(path, sizeof(path), "%s/nope.yaml", dir);
    ck_assert_int_eq(rd_conf_load_file(&conf, path, err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST


Suite *
conf_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("conf");

    tc = tcase_create("set");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, conf_init_fills_documented_defaults);
    tcase_add_test(tc, conf_set_unknown_option_fails_naming_it);
    tcase_add_test(tc, conf_set_listen_accepts_ip_hostport_rejects_hostname);
    tcase_add_test(tc, conf_set_strings_reject_empty);
    tcase_add_test(tc, conf_set_log_level_accepts_known_levels_only);
    tcase_add_test(tc, conf_set_size_bounds_1k_to_64m);
    tcase_add_test(tc, conf_set_duration_bounds_and_type);
    tcase_add_test(tc, conf_set_int_rejects_units_and_range);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, conf_load_good_file_sets_every_key);
    tcase_add_test(tc, conf_load_empty_file_keeps_defaults);
    tcase_add_test(tc, conf_store_options_check_their_values);
    tcase_add_test(tc, conf_trusted_networks_and_exposure);
    tcase_add_test(tc, conf_domain_suffixes);
    tcase_add_test(tc, conf_check_tls_cert_and_key_go_together);
    tcase_add_test(tc, conf_check_tls_client_ca_needs_https);
    tcase_add_test(tc, conf_load_etcd_endpoints_as_a_yaml_sequence);
    tcase_add_test(tc, conf_load_unknown_key_reports_file_and_line);
    tcase_add_test(tc, conf_load_bad_value_reports_file_line_and_option);
    tcase_add_test(tc, conf_load_nested_mapping_is_rejected);
    tcase_add_test(tc, conf_load_sequence_value_is_rejected);
    tcase_add_test(tc, conf_load_top_level_scalar_is_rejected);
    tcase_add_test(tc, conf_load_invalid_yaml_reports_file_and_line);
    tcase_add_test(tc, conf_load_missing_file_fails_naming_it);
    suite_add_tcase(s, tc);

    return s;
}

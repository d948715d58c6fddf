/*
 * check_addr: IP literals and ADDR:PORT (common/mesh_addr).
 */

#include <arpa/inet.h>
#include <check.h>
#include <string.h>

#include "mesh_addr.h"


START_TEST(addr_valid_accepts_v4_and_v6_literals)
{
    ck_assert_int_eq(mesh_addr_valid("127.0.0.1"), 1);
    ck_assert_int_eq(mesh_addr_valid("0.0.0.0"), 1);
    ck_assert_int_eq(mesh_addr_valid("255.255.255.255"), 1);
    ck_assert_int_eq(mesh_addr_valid("::1"), 1);
    ck_assert_int_eq(mesh_addr_valid("::"), 1);
    ck_assert_int_eq(mesh_addr_valid("fe80::1:2"), 1);
    ck_assert_int_eq(mesh_addr_valid("2001:db8::ffff:10.0.0.1"), 1);
}
END_TEST


START_TEST(addr_valid_rejects_hostnames_and_junk)
{
    ck_assert_int_eq(mesh_addr_valid("localhost"), 0);
    ck_assert_int_eq(mesh_addr_valid("example.com"), 0);
    ck_assert_int_eq(mesh_addr_valid(""), 0);
    ck_assert_int_eq(mesh_addr_valid("256.0.0.1"), 0);
    ck_assert_int_eq(mesh_addr_valid("1.2.3"), 0);
    ck_assert_int_eq(mesh_addr_valid("[::1]"), 0);
    ck_assert_int_eq(mesh_addr_valid("127.0.0.1:80"), 0);
    ck_assert_int_eq(mesh_addr_valid(" 127.0.0.1"), 0);
}
END_TEST


START_TEST(addr_sockaddr_fills_family_port_and_length)
{
    mesh_sockaddr_t  sa;

    ck_assert_int_eq(mesh_addr_sockaddr("10.1.2.3", 8080, &sa), 0);
    ck_assert_int_eq(sa.u.sa.sa_family, AF_INET);
    ck_assert_int_eq(ntohs(sa.u.sin.sin_port), 8080);
    ck_assert_int_eq(ntohl(sa.u.sin.sin_addr.s_addr), 0x0a010203);
    ck_assert_int_eq(sa.len, sizeof(struct sockaddr_in));

    ck_assert_int_eq(mesh_addr_sockaddr("::1", 7, &sa), 0);
    ck_assert_int_eq(sa.u.sa.sa_family, AF_INET6);
    ck_assert_int_eq(ntohs(sa.u.sin6.sin6_port), 7);
    ck_assert_int_eq(sa.u.sin6.sin6_addr.s6_addr[15], 1);
    ck_assert_int_eq(sa.len, sizeof(struct sockaddr_in6));

    ck_assert_int_eq(mesh_addr_sockaddr("localhost", 80, &sa), -1);
}
END_TEST


START_TEST(hostport_v4_gives_host_port_and_sockaddr)
{
    int               port = 0;
    char              host[MESH_ADDR_LEN];
    mesh_sockaddr_t   sa;

    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:7770", host,
                                         sizeof(host), &port, &sa),
                     MESH_ADDR_OK);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 7770);
    ck_assert_int_eq(sa.u.sa.sa_family, AF_INET);
    ck_assert_int_eq(ntohs(sa.u.sin.sin_port), 7770);

    ck_assert_int_eq(mesh_hostport_parse("10.1.2.3:1", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_OK);
    ck_assert_str_eq(host, "10.1.2.3");
    ck_assert_int_eq(port, 1);

    ck_assert_int_eq(mesh_hostport_parse("10.1.2.3:65535", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_OK);
    ck_assert_int_eq(port, 65535);
}
END_TEST


START_TEST(hostport_bracketed_v6_strips_brackets)
{
    int               port = 0;
    char              host[MESH_ADDR_LEN];
    mesh_sockaddr_t   sa;

    ck_assert_int_eq(mesh_hostport_parse("[::1]:7770", host, sizeof(host),
                                         &port, &sa), MESH_ADDR_OK);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 7770);
    ck_assert_int_eq(sa.u.sa.sa_family, AF_INET6);
    ck_assert_int_eq(ntohs(sa.u.sin6.sin6_port), 7770);
    ck_assert_int_eq(mesh_hostport_family("[::1]:7770"), '6');

    ck_assert_int_eq(mesh_hostport_parse("[fe80::1:2]:80", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_OK);
    ck_assert_str_eq(host, "fe80::1:2");
    ck_assert_int_eq(port, 80);
}
END_TEST


START_TEST(hostport_rejects_missing_port_and_bad_form)
{
    int   port = 4242;
    char  host[MESH_ADDR_LEN];

    strcpy(host, "kept");

    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("[::1]", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);
    ck_assert_int_eq(mesh_hostport_parse("[::1]:", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse(":80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);
    ck_assert_int_eq(mesh_hostport_parse("[]:80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);
    ck_assert_int_eq(mesh_hostport_parse("", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);

    /* an IPv6 literal needs its brackets: "::1:80" reads two ways */
    ck_assert_int_eq(mesh_hostport_parse("::1:80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);

    ck_assert_int_eq(port, 4242);
    ck_assert_str_eq(host, "kept");
}
END_TEST


START_TEST(hostport_rejects_wrong_family_and_names)
{
    int   port = 4242;
    char  host[MESH_ADDR_LEN];

    ck_assert_int_eq(mesh_hostport_parse("localhost:80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_IP);
    ck_assert_int_eq(mesh_hostport_parse("256.1.1.1:80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_IP);
    ck_assert_int_eq(mesh_hostport_parse("[127.0.0.1]:80", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_IP);
    ck_assert_int_eq(mesh_hostport_family("127.0.0.1:80"), '4');
    ck_assert_int_eq(port, 4242);
}
END_TEST


START_TEST(hostport_rejects_port_0_65536_and_non_digits)
{
    int   port = 4242;
    char  host[MESH_ADDR_LEN];

    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:0", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:65536", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("[::1]:0", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("[::1]:65536", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:-1", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:+80", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1: 80", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:80x", host,
                                         sizeof(host), &port, NULL),
                     MESH_ADDR_PORT);
    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:99999999999999999999",
                                         host, sizeof(host), &port, NULL),
                     MESH_ADDR_PORT);
    ck_assert_int_eq(port, 4242);
}
END_TEST


START_TEST(hostport_rejects_host_longer_than_buffer)
{
    int   port = 0;
    char  host[8];

    ck_assert_int_eq(mesh_hostport_parse("127.0.0.1:80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_FORM);
    ck_assert_int_eq(mesh_hostport_parse("1.2.3.4:80", host, sizeof(host),
                                         &port, NULL), MESH_ADDR_OK);
    ck_assert_str_eq(host, "1.2.3.4");
}
END_TEST


START_TEST(addr_text_writes_v4_and_bracketed_v6)
{
    char              buf[MESH_ADDR_TEXT_LEN];
    mesh_sockaddr_t   sa;

    ck_assert_int_eq(mesh_addr_sockaddr("127.0.0.1", 40000, &sa), 0);
    mesh_addr_text(&sa.u.sa, buf, sizeof(buf));
    ck_assert_str_eq(buf, "127.0.0.1:40000");

    ck_assert_int_eq(mesh_addr_sockaddr("::ffff:255.255.255.255", 65535,
                                        &sa), 0);
    mesh_addr_text(&sa.u.sa, buf, sizeof(buf));
    ck_assert_str_eq(buf, "[::ffff:255.255.255.255]:65535");

    ck_assert_int_eq(mesh_addr_sockaddr("ffff:ffff:ffff:ffff:ffff:ffff:"
                                        "ffff:ffff", 1, &sa), 0);
    mesh_addr_text(&sa.u.sa, buf, sizeof(buf));
    ck_assert_str_eq(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1");

    mesh_addr_text(NULL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "");
}
END_TEST


static int
in_net(const char *net, const char *ip)
{
    mesh_cidr_t      c;
    mesh_sockaddr_t  sa;

    ck_assert_int_eq(mesh_cidr_parse(net, strlen(net), &c), 0);
    ck_assert_int_eq(mesh_addr_sockaddr(ip, 80, &sa), 0);

    return mesh_cidr_match(&c, &sa.u.sa);
}


START_TEST(cidr_matches_by_prefix_and_family)
{
    ck_assert_int_eq(in_net("127.0.0.0/8", "127.0.0.1"), 1);
    ck_assert_int_eq(in_net("127.0.0.0/8", "127.255.1.2"), 1);
    ck_assert_int_eq(in_net("127.0.0.0/8", "128.0.0.1"), 0);
    ck_assert_int_eq(in_net("127.0.0.1/32", "127.0.0.2"), 0);
    ck_assert_int_eq(in_net("127.0.0.1", "127.0.0.1"), 1);
    ck_assert_int_eq(in_net("10.1.2.0/23", "10.1.3.200"), 1);
    ck_assert_int_eq(in_net("10.1.2.0/23", "10.1.4.1"), 0);
    ck_assert_int_eq(in_net("10.0.0.0/0", "192.168.1.1"), 1);
    ck_assert_int_eq(in_net("::1/128", "::1"), 1);
    ck_assert_int_eq(in_net("::1/128", "::2"), 0);
    ck_assert_int_eq(in_net("fd00::/8", "fd12:3456::1"), 1);
    ck_assert_int_eq(in_net("fd00::/8", "fe80::1"), 0);

    /* a family never matches the other's */
    ck_assert_int_eq(in_net("0.0.0.0/0", "::1"), 0);
    ck_assert_int_eq(in_net("::/0", "127.0.0.1"), 0);
}
END_TEST


START_TEST(cidr_match_any_of_a_list)
{
    mesh_cidr_t      nets[2];
    mesh_sockaddr_t  sa;

    ck_assert_int_eq(mesh_cidr_parse("10.0.0.0/8", 10, &nets[0]), 0);
    ck_assert_int_eq(mesh_cidr_parse("::1", 3, &nets[1]), 0);

    ck_assert_int_eq(mesh_cidr_match_any(nets, 2, NULL, "10.9.9.9"), 1);
    ck_assert_int_eq(mesh_cidr_match_any(nets, 2, NULL, "::1"), 1);
    ck_assert_int_eq(mesh_cidr_match_any(nets, 2, NULL, "11.0.0.1"), 0);
    ck_assert_int_eq(mesh_cidr_match_any(nets, 2, NULL, "nowhere"), 0);
    ck_assert_int_eq(mesh_cidr_match_any(nets, 0, NULL, "10.0.0.1"), 0);

    ck_assert_int_eq(mesh_addr_sockaddr("10.1.1.1", 80, &sa), 0);
    ck_assert_int_eq(mesh_cidr_match_any(nets, 2, &sa.u.sa, NULL), 1);
}
END_TEST


START_TEST(cidr_refuses_bad_networks)
{
    mesh_cidr_t  c;

    ck_assert_int_eq(mesh_cidr_parse("localhost", 9, &c), -1);
    ck_assert_int_eq(mesh_cidr_parse("10.0.0.0/33", 11, &c), -1);
    ck_assert_int_eq(mesh_cidr_parse("::/129", 6, &c), -1);
    ck_assert_int_eq(mesh_cidr_parse("10.0.0.0/", 9, &c), -1);
    ck_assert_int_eq(mesh_cidr_parse("10.0.0.0/x", 10, &c), -1);
    ck_assert_int_eq(mesh_cidr_parse("/8", 2, &c), -1);
    ck_assert_int_eq(mesh_cidr_parse("", 0, &c), -1);

    /* len bounds the text: "10.0.0.0/8,..." read up to the comma */
    ck_assert_int_eq(mesh_cidr_parse("10.0.0.0/8,::1", 10, &c), 0);
    ck_assert_int_eq(c.bits, 8);
}
END_TEST


Suite *
addr_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("addr");

    tc = tcase_create("literal");
    tcase_add_test(tc, addr_valid_accepts_v4_and_v6_literals);
    tcase_add_test(tc, addr_valid_rejects_hostnames_and_junk);
    tcase_add_test(tc, addr_sockaddr_fills_family_port_and_length);
    tcase_add_test(tc, addr_text_writes_v4_and_bracketed_v6);
    suite_add_tcase(s, tc);

    tc = tcase_create("cidr");
    tcase_add_test(tc, cidr_matches_by_prefix_and_family);
    tcase_add_test(tc, cidr_refuses_bad_networks);
    tcase_add_test(tc, cidr_match_any_of_a_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("hostport");
    tcase_add_test(tc, hostport_v4_gives_host_port_and_sockaddr);
    tcase_add_test(tc, hostport_bracketed_v6_strips_brackets);
    tcase_add_test(tc, hostport_rejects_missing_port_and_bad_form);
    tcase_add_test(tc, hostport_rejects_wrong_family_and_names);
    tcase_add_test(tc, hostport_rejects_port_0_65536_and_non_digits);
    tcase_add_test(tc, hostport_rejects_host_longer_than_buffer);
    suite_add_tcase(s, tc);

    return s;
}


/*
 * Copyright (C) ngx_mesh authors
 */


/*
 * The poll over HTTPS, through nginx's own SSL layer: the context made
 * once from the mesh_registry_ssl_* directives, the handshake of a poll's
 * connection, and the check of what the registry presented (its chain
 * against mesh_registry_ssl_trusted_certificate, its name against the
 * URL's host). The poll (ngx_http_mesh_registry.c) reports a failure in
 * the status and once in the log, and keeps routing on what it has.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_mesh_module.h"


#if (NGX_HTTP_SSL)

#define NGX_HTTP_MESH_SSL_DEPTH  4


static ngx_int_t
ngx_http_mesh_ssl_is_addr(u_char *name, size_t len)
{
    if (ngx_inet_addr(name, len) != INADDR_NONE) {
        return 1;
    }

#if (NGX_HAVE_INET6)
    {
    u_char  addr[16];

    if (ngx_inet6_addr(name, len, addr) == NGX_OK) {
        return 1;
    }
    }
#endif

    return 0;
}


/* an https:// URL's host as SNI and the certificate's check take it */
ngx_int_t
ngx_http_mesh_ssl_name(ngx_conf_t *cf, ngx_http_mesh_registry_t *reg)
{
    u_char  *name;
    size_t   len;

    name = reg->url->host.data;
    len = reg->url->host.len;

    if (len > 2 && name[0] == '[' && name[len - 1] == ']') {
        name++;
        len -= 2;
    }

    reg->ssl_name = ngx_pnalloc(cf->pool, len + 1);
    if (reg->ssl_name == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(reg->ssl_name, name, len + 1);
    reg->ssl_ip = ngx_http_mesh_ssl_is_addr(name, len);

    return NGX_OK;
}


/* the SSL context for https:// registries, made at configuration */
char *
ngx_http_mesh_ssl_conf(ngx_conf_t *cf, ngx_http_mesh_main_conf_t *mmcf)
{
    ngx_uint_t                 i, https;
    ngx_pool_cleanup_t        *cln;
    ngx_http_mesh_registry_t  *regs;

    regs = mmcf->registries.elts;
    https = 0;

    for (i = 0; mmcf->registry && i < mmcf->registries.nelts; i++) {
        https |= regs[i].ssl;
    }

    ngx_conf_init_value(mmcf->ssl_verify, 1);

    if (!https) {
        return NGX_CONF_OK;
    }

    if (mmcf->ssl_verify && mmcf->ssl_trusted_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "mesh_registry \"%V\" is https: it needs "
                           "\"mesh_registry_ssl_trusted_certificate\" (the "
                           "CA that signs the registry's certificate), or "
                           "\"mesh_registry_ssl_verify off\"",
                           &mmcf->registry_uri);
        return NGX_CONF_ERROR;
    }

    if (mmcf->ssl_certificate.len != 0
        && mmcf->ssl_certificate_key.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"mesh_registry_ssl_certificate_key\" for "
                           "mesh_registry_ssl_certificate \"%V\"",
                           &mmcf->ssl_certificate);
        return NGX_CONF_ERROR;
    }

    mmcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (mmcf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    mmcf->ssl->log = cf->log;

    if (ngx_ssl_create(mmcf->ssl, NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(mmcf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = mmcf->ssl;

    if (mmcf->ssl_certificate.len != 0
        && ngx_ssl_certificate(cf, mmcf->ssl, &mmcf->ssl_certificate,
                               &mmcf->ssl_certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (mmcf->ssl_verify
        && ngx_ssl_trusted_certificate(cf, mmcf->ssl,
                                       &mmcf->ssl_trusted_certificate,
                                       NGX_HTTP_MESH_SSL_DEPTH)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Start TLS on a poll's connection: NGX_OK when the handshake is over (a
 * failed one too: the handler checks), NGX_AGAIN when handler is called
 * when it is, NGX_ERROR.
 */
ngx_int_t
ngx_http_mesh_ssl_handshake(ngx_connection_t *c, ngx_ssl_t *ssl,
    ngx_http_mesh_registry_t *reg, ngx_connection_handler_pt handler)
{
    ngx_int_t  rc;

    /* the SSL connection's memory; the poll destroys it with c */
    if (c->pool == NULL) {
        c->pool = ngx_create_pool(1024, c->log);
        if (c->pool == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_ssl_create_connection(ssl, c, NGX_SSL_CLIENT) != NGX_OK) {
        return NGX_ERROR;
    }

    /* SNI names a host, never an address (RFC 6066) */
    if (!reg->ssl_ip
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) reg->ssl_name)
           == 0)
    {
        return NGX_ERROR;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = handler;
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/*
 * What the registry presented: NGX_OK, or NGX_ERROR with the reason in
 * reason (size bytes, NUL-terminated).
 */
ngx_int_t
ngx_http_mesh_ssl_verify(ngx_connection_t *c, ngx_http_mesh_main_conf_t *mmcf,
    ngx_http_mesh_registry_t *reg, u_char *reason, size_t size)
{
    long   rc;
    X509  *cert;

    if (c->ssl == NULL || !c->ssl->handshaked) {
        ngx_snprintf(reason, size, "TLS handshake with the registry failed "
                     "or timed out%Z");
        return NGX_ERROR;
    }

    if (!mmcf->ssl_verify) {
        return NGX_OK;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_snprintf(reason, size, "the registry's certificate does not "
                     "verify against mesh_registry_ssl_trusted_certificate: "
                     "%s (%l)%Z", X509_verify_cert_error_string(rc), rc);
        return NGX_ERROR;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);

    if (cert == NULL) {
        ngx_snprintf(reason, size, "the registry sent no certificate%Z");
        return NGX_ERROR;
    }

    if (reg->ssl_ip) {
        rc = X509_check_ip_asc(cert, (char *) reg->ssl_name, 0);

    } else {
        rc = X509_check_host(cert, (char *) reg->ssl_name,
                             ngx_strlen(reg->ssl_name), 0, NULL);
    }

    X509_free(cert);

    if (rc != 1) {
        ngx_snprintf(reason, size, "the registry's certificate is not for "
                     "\"%s\"%Z", reg->ssl_name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a connection with TLS on it is shut down before it is closed */
void
ngx_http_mesh_ssl_close(ngx_connection_t *c)
{
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
}

#endif

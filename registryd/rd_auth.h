/*
 * rd_auth: who may do what. The tokens registryd knows (a tokens file of
 * named tokens with scopes, or the single token of token_file), the
 * client certificate subjects that stand for some of them, and the one
 * decision a request needs: allowed, 401 (no or a wrong credential) or
 * 403 (a credential without the scope). The set is replaced as a whole on
 * SIGHUP; a request sees the old set or the new one, never a mix.
 */

#ifndef RD_AUTH_H
#define RD_AUTH_H

#include <stddef.h>

#include "rd_conf.h"

#define RD_AUTH_NAME_MAX    64
#define RD_AUTH_SECRET_MIN  16      /* a tokens file's secrets */
#define RD_AUTH_SUBJECT_MAX 512     /* a client certificate's subject */
#define RD_AUTH_SUBJECT_MAX_TEXT  "512"

/* what a request needs */
typedef enum {
    RD_NEED_READ = 0,           /* snapshot, services, events, metrics */
    RD_NEED_WRITE,              /* an instance of one service */
    RD_NEED_POLICIES,           /* policies */
    RD_NEED_ADMIN
} rd_need_e;

/* the decision */
typedef enum {
    RD_AUTH_OPEN = 0,           /* no token configured: protected mode */
    RD_AUTH_ALLOW,
    RD_AUTH_UNAUTHENTICATED,    /* 401 */
    RD_AUTH_FORBIDDEN           /* 403 */
} rd_auth_e;

typedef struct rd_auth_s  rd_auth_t;

/* read conf->tokens_file or conf->token_file (neither: no token, every
 * request is RD_AUTH_OPEN); NULL with a one-line reason in err */
rd_auth_t *rd_auth_create(const rd_conf_t *conf, char *err);
void rd_auth_free(rd_auth_t *auth);

/* read the file again (SIGHUP); on an error the set in use stays and err
 * says why; the number of tokens now in use */
int rd_auth_reload(rd_auth_t *auth, size_t *ntokens, char *err);

/* tokens in use; 0: protected mode */
size_t rd_auth_count(rd_auth_t *auth);

/*
 * The decision for a request that needs `need` (for RD_NEED_WRITE, on
 * service svc). bearer is the Authorization header's token or NULL;
 * subject the verified client certificate's subject or NULL. reason gets
 * a one-line explanation of a refusal naming the missing scope (size
 * RD_ERR_LEN), who the token's name when one matched (size
 * RD_AUTH_NAME_MAX + 1).
 */
rd_auth_e rd_auth_check(rd_auth_t *auth, const char *bearer,
    const char *subject, rd_need_e need, const char *svc, char *who,
    char *reason);

#endif

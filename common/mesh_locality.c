/*
 * mesh_locality: localities, their priorities and shares, as Istio sets
 * them up and Envoy balances on them.
 */

#include <string.h>

#include "mesh_locality.h"
#include "mesh_name.h"


/* the parts of a pattern: up to three, each "*" or a name */

static size_t
mesh_locality_split(const char *s, size_t len, const char **part,
    size_t *plen)
{
    size_t       n;
    const char  *p, *end, *slash;

    n = 0;
    p = s;
    end = s + len;

    for ( ;; ) {
        if (n == MESH_LOCALITY_PARTS) {
            return MESH_LOCALITY_PARTS + 1;
        }

        slash = memchr(p, '/', end - p);

        part[n] = p;
        plen[n] = (slash ? slash : end) - p;
        n++;

        if (slash == NULL) {
            return n;
        }

        p = slash + 1;
    }
}


int
mesh_locality_parse(const char *s, size_t len, mesh_locality_t *loc)
{
    size_t  i, n;

    memset(loc, 0, sizeof(mesh_locality_t));

    if (len == 0 || len > MESH_LOCALITY_MAX) {
        return -1;
    }

    n = mesh_locality_split(s, len, loc->part, loc->len);

    if (n > MESH_LOCALITY_PARTS) {
        memset(loc, 0, sizeof(mesh_locality_t));
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (!mesh_name_valid(loc->part[i], loc->len[i])) {
            memset(loc, 0, sizeof(mesh_locality_t));
            return -1;
        }
    }

    return 0;
}


int
mesh_locality_pattern_valid(const char *s, size_t len)
{
    size_t       i, n, plen[MESH_LOCALITY_PARTS];
    const char  *part[MESH_LOCALITY_PARTS];

    if (len == 0 || len > MESH_LOCALITY_MAX) {
        return 0;
    }

    n = mesh_locality_split(s, len, part, plen);

    if (n > MESH_LOCALITY_PARTS) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (plen[i] == 1 && part[i][0] == '*') {
            if (i != n - 1) {
                return 0;       /* "*" only last */
            }

            continue;
        }

        if (!mesh_name_valid(part[i], plen[i])) {
            return 0;
        }
    }

    return 1;
}


int
mesh_locality_match(const mesh_locality_t *loc, const char *pattern)
{
    size_t       i, n, plen[MESH_LOCALITY_PARTS];
    const char  *part[MESH_LOCALITY_PARTS];

    n = mesh_locality_split(pattern, strlen(pattern), part, plen);

    if (n > MESH_LOCALITY_PARTS) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (plen[i] == 1 && part[i][0] == '*') {
            return 1;
        }

        if (plen[i] != loc->len[i]
            || memcmp(part[i], loc->part[i], plen[i]) != 0)
        {
            return 0;
        }
    }

    return 1;
}


int
mesh_locality_overlap(const char *a, const char *b)
{
    size_t       i, na, nb, la[MESH_LOCALITY_PARTS], lb[MESH_LOCALITY_PARTS];
    const char  *pa[MESH_LOCALITY_PARTS], *pb[MESH_LOCALITY_PARTS];

    na = mesh_locality_split(a, strlen(a), pa, la);
    nb = mesh_locality_split(b, strlen(b), pb, lb);

    for (i = 0; i < na && i < nb && i < MESH_LOCALITY_PARTS; i++) {
        if ((la[i] == 1 && pa[i][0] == '*')
            || (lb[i] == 1 && pb[i][0] == '*'))
        {
            return 1;
        }

        if (la[i] != lb[i] || memcmp(pa[i], pb[i], la[i]) != 0) {
            return 0;
        }
    }

    /* one is a prefix of the other: the shorter matches the longer */
    return 1;
}


/* a label's value, "" when the labels (sorted by key) lack it */

static const char *
mesh_locality_label(const mesh_label_t *labels, size_t n, const char *key)
{
    int     rc;
    size_t  lo, hi, mid;

    lo = 0;
    hi = n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        rc = strcmp(labels[mid].key, key);

        if (rc == 0) {
            return labels[mid].value;
        }

        if (rc < 0) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return "";
}


static int
mesh_locality_same(const mesh_locality_t *a, const mesh_locality_t *b,
    size_t i)
{
    return a->len[i] == b->len[i]
           && memcmp(a->part[i], b->part[i], a->len[i]) == 0;
}


unsigned
mesh_locality_priority(const mesh_locality_lb_t *lb,
    const mesh_locality_t *self, const mesh_label_t *self_labels,
    size_t nself, const mesh_locality_t *loc, const mesh_label_t *labels,
    size_t nlabels)
{
    size_t       i, k, matched;
    unsigned     lp, pp;
    const char  *key;

    /* Istio's LbPriority */

    if (!mesh_locality_same(self, loc, 0)) {
        lp = 3;

    } else if (!mesh_locality_same(self, loc, 1)) {
        lp = 2;

    } else if (!mesh_locality_same(self, loc, 2)) {
        lp = 1;

    } else {
        lp = 0;
    }

    /* failover: another region than the one named "to" comes last */

    for (i = 0; lp == 3 && i < lb->nfailover; i++) {
        if (strlen(lb->failover[i].from) == self->len[0]
            && memcmp(lb->failover[i].from, self->part[0], self->len[0])
               == 0)
        {
            if (strlen(lb->failover[i].to) != loc->len[0]
                || memcmp(lb->failover[i].to, loc->part[0], loc->len[0])
                   != 0)
            {
                lp = 4;
            }

            break;
        }
    }

    if (lb->npriority == 0) {
        return lp;
    }

    /* failoverPriority: the keys matched from the first on */

    matched = 0;

    for (i = 0; i < lb->npriority; i++) {
        key = lb->priority[i];

        if (strcmp(key, MESH_TOPOLOGY_REGION) == 0) {
            k = 0;

        } else if (strcmp(key, MESH_TOPOLOGY_ZONE) == 0) {
            k = 1;

        } else if (strcmp(key, MESH_TOPOLOGY_SUBZONE) == 0) {
            k = 2;

        } else {
            if (strcmp(mesh_locality_label(self_labels, nself, key),
                       mesh_locality_label(labels, nlabels, key))
                != 0)
            {
                break;
            }

            matched++;
            continue;
        }

        if (!mesh_locality_same(self, loc, k)) {
            break;
        }

        matched++;
    }

    pp = (unsigned) (lb->npriority - matched);

    return lb->nfailover ? 5 * pp + lp : pp;
}


void
mesh_priority_load(const size_t *healthy, const size_t *total, size_t n,
    unsigned *load)
{
    size_t    i, first;
    unsigned  health, sum, remaining;

    sum = 0;
    first = n;

    for (i = 0; i < n; i++) {
        health = total[i]
                 ? (unsigned) (MESH_OVERPROVISIONING * healthy[i] / total[i])
                 : 0;
        load[i] = (health > 100) ? 100 : health;
        sum += load[i];

        if (load[i] && first == n) {
            first = i;
        }
    }

    if (sum == 0) {
        return;
    }

    if (sum > 100) {
        sum = 100;
    }

    remaining = 100;

    for (i = 0; i < n; i++) {
        health = load[i] * 100 / sum;
        load[i] = (health < remaining) ? health : remaining;
        remaining -= load[i];
    }

    /* what rounding left goes to the first healthy one, as in Envoy */
    load[first] += remaining;
}


double
mesh_locality_effective(double weight, size_t healthy, size_t total)
{
    double  ratio;

    if (total == 0 || healthy == 0) {
        return 0;
    }

    ratio = (MESH_OVERPROVISIONING / 100.0) * (double) healthy
            / (double) total;

    return weight * (ratio < 1 ? ratio : 1);
}


unsigned
mesh_warmup_percent(uint64_t age, uint64_t duration)
{
    uint64_t  p;

    if (duration == 0 || age >= duration) {
        return 100;
    }

    p = age * 100 / duration;

    return (p < MESH_WARMUP_MIN_PERCENT) ? MESH_WARMUP_MIN_PERCENT
                                         : (unsigned) p;
}

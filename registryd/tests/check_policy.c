/*
 * check_policy: YAML policies: every refusal names its field, line and
 * column; good documents normalize as docs/policies.md says; policies
 * go through the registry's writer, the store and the snapshot.
 */

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "rd_policy.h"
#include "rd_snapshot.h"

#define DR  "apiVersion: networking.istio.io/v1\n" \
            "kind: DestinationRule\n"              \
            "metadata:\n"                          \
            "  name: d\n"                          \
            "spec:\n"                              \
            "  host: orders\n"

#define VS  "apiVersion: networking.istio.io/v1\n" \
            "kind: VirtualService\n"               \
            "metadata:\n"                          \
            "  name: v\n"                          \
            "spec:\n"                              \
            "  hosts: [orders]\n"                  \
            "  http:\n"

/* a Gateway's servers follow */
#define GW  "apiVersion: networking.istio.io/v1\nkind: Gateway\n"             \
            "metadata: {name: gw}\nspec:\n  servers:\n"

/* a VirtualService for "*" at these gateways */
#define GVS(name, gws)                                                       \
    "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: " name "}\n" \
    "spec:\n  hosts: [\"*\"]\n  gateways: " gws "\n  http:\n"               \
    "  - route:\n    - destination: {host: web}\n"

/* a VirtualService at gateway gw for "*.b.example"; tls routes follow */
#define TVS "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"     \
            "metadata: {name: t}\nspec:\n  hosts: [\"*.b.example\"]\n"      \
            "  gateways: [gw]\n  tls:\n"

/* a tls route's destination, and only that */
#define TR  "    route:\n    - destination: {host: web}\n"

/* a route to orders, and only that */
#define RT_ONLY  "    route:\n    - destination: {host: orders}\n"
#define RT       "  - route:\n    - destination: {host: orders}\n"

typedef struct {
    const char  *yaml;
    const char  *field;         /* "" none */
    int          line;
    int          column;
    int          document;
    const char  *msg;           /* a part of the message */
} bad_t;

static const bad_t  bad[] = {
    /* 0: YAML syntax */
    { "a: [1, 2\n", "", 2, 1, -1, "invalid YAML" },
    { "a: b\n c: d\n", "", 2, 3, -1, "invalid YAML" },
    { "", "", -1, -1, -1, "no document" },
    { "x: &a 1\ny: *a\n", "", 2, 4, -1, "aliases" },
    { "x: !!str 1\n", "", 1, 4, -1, "tags" },
    /* 5: document shape */
    { "- a\n", "", 1, 1, 0, "must be a mapping" },
    { "apiVersion: v2\n", "apiVersion", 1, 13, 0, "is not one of" },
    { "apiVersion: mesh/v1\nkind: Sidecar\n", "kind", 2, 7, 0,
      "DestinationRule, VirtualService or Gateway" },
    { "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: d}\n",
      "spec", 1, 1, 0, "is required" },
    { "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {}\nspec: {}\n",
      "metadata.name", 3, 11, 0, "is required" },
    /* 10 */
    { "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: -x}\n"
      "spec: {host: a}\n", "metadata.name", 3, 18, 0, "not a valid name" },
    { "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: d, "
      "owner: x}\nspec: {host: a}\n", "metadata.owner", 3, 21, 0,
      "unknown field" },
    { DR "state: {}\n", "state", 7, 1, 0, "unknown field" },
    { DR "  host: carts\n", "spec.host", 7, 3, 0, "duplicate key" },
    { "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
      "spec: {subsets: []}\n", "spec.host", 4, 7, 0, "is required" },
    /* 15: DestinationRule */
    { DR "  exportTo: ['.']\n", "spec.exportTo", 7, 3, 0,
      "unsupported field" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      simple: FASTEST\n",
      "spec.trafficPolicy.loadBalancer.simple", 9, 15, 0, "FASTEST" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      simple: PASSTHROUGH\n",
      "spec.trafficPolicy.loadBalancer.simple", 9, 15, 0, "not supported" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      simple: RANDOM\n"
      "      consistentHash: {useSourceIp: true}\n",
      "spec.trafficPolicy.loadBalancer", 9, 7, 0, "exactly one" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
      "        httpHeaderName: x-user\n        useSourceIp: true\n",
      "spec.trafficPolicy.loadBalancer.consistentHash", 10, 9, 0,
      "exactly one" },
    /* 20 */
    { DR "  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
      "        useSourceIp: false\n",
      "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp", 10, 22,
      0, "must be true" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
      "        httpHeaderName: \"x user\"\n",
      "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName", 10,
      25, 0, "not a valid header name" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
      "        httpCookie: {ttl: 10s}\n",
      "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", 10,
      21, 0, "is required" },
    { DR "  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
      "        ringHash: {minimumRingSize: 1024}\n",
      "spec.trafficPolicy.loadBalancer.consistentHash.ringHash", 10, 9, 0,
      "unsupported field" },
    { DR "  trafficPolicy:\n    outlierDetection:\n"
      "      consecutive5xxErrors: -1\n",
      "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", 9, 29, 0,
      "integer 0.." },
    /* 25 */
    { DR "  trafficPolicy:\n    outlierDetection:\n"
      "      interval: 10 seconds\n",
      "spec.trafficPolicy.outlierDetection.interval", 9, 17, 0,
      "not a duration" },
    { DR "  trafficPolicy:\n    outlierDetection:\n"
      "      maxEjectionPercent: 101\n",
      "spec.trafficPolicy.outlierDetection.maxEjectionPercent", 9, 27, 0,
      "0..100" },
    { DR "  trafficPolicy:\n    outlierDetection:\n"
      "      splitExternalLocalOriginErrors: \"yes\"\n",
      "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors", 9,
      39, 0, "true or false" },
    { DR "  trafficPolicy:\n    outlierDetection:\n"
      "      consecutiveGatewayErrors: 3\n      consecutiveErrors: 4\n",
      "spec.trafficPolicy.outlierDetection.consecutiveErrors", 10, 7, 0,
      "deprecated alias" },
    { DR "  trafficPolicy:\n    outlierDetection:\n"
      "      baseEjectionTime: 0.5ms\n",
      "spec.trafficPolicy.outlierDetection.baseEjectionTime", 9, 25, 0,
      "whole number of milliseconds" },
    /* 30 */
    { DR "  trafficPolicy:\n    connectionPool:\n      tcp:\n"
      "        maxConnections: 0\n",
      "spec.trafficPolicy.connectionPool.tcp.maxConnections", 10, 25, 0,
      "1..1000000" },
    { DR "  trafficPolicy:\n    connectionPool:\n      http:\n"
      "        http2MaxRequests: 0\n",
      "spec.trafficPolicy.connectionPool.http.http2MaxRequests", 10, 27, 0,
      "1..2147483647" },
    { DR "  trafficPolicy:\n    connectionPool:\n      tcp:\n"
      "        maxConnectionDuration: 1s\n",
      "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration", 10, 9,
      0, "unsupported field" },
    { DR "  subsets:\n  - name: v1\n", "spec.subsets[0].labels", 8, 5, 0,
      "is required" },
    { DR "  subsets:\n  - name: v1\n    labels: {}\n",
      "spec.subsets[0].labels", 9, 13, 0, "at least one label" },
    /* 35 */
    { DR "  subsets:\n  - name: v1\n    labels: {version: 1}\n",
      "spec.subsets[0].labels.version", 9, 23, 0, "must be a string" },
    { DR "  subsets:\n  - name: v1\n    labels: {version: v1}\n"
      "  - name: v1\n    labels: {version: v2}\n",
      "spec.subsets[1].name", 10, 11, 0, "duplicate subset" },
    { DR "  subsets:\n  - name: v1\n    labels: {version: v1}\n"
      "    trafficPolicy:\n      tls: {mode: SIMPLE, credentialName: s}\n",
      "spec.subsets[0].trafficPolicy.tls.credentialName", 11, 27, 0,
      "Kubernetes secret" },
    { DR "  subsets: {v1: {}}\n", "spec.subsets", 7, 12, 0,
      "must be a list" },
    /* VirtualService */
    { VS "  - route:\n    - destination: {host: orders}\n      weight: 90\n",
      "spec.http[0].route[0].weight", 10, 15, 0, "add up to 90" },
    /* 40 */
    { VS "  - route:\n    - destination: {host: orders}\n      weight: 90\n"
      "    - destination: {host: orders}\n      weight: 20\n",
      "spec.http[0].route[1].weight", 12, 15, 0, "add up to 110" },
    { VS "  - route:\n    - destination: {host: orders}\n      weight: 50\n"
      "    - destination: {host: orders}\n",
      "spec.http[0].route[1].weight", 11, 7, 0, "is required" },
    { VS "  - route:\n    - destination: {host: orders}\n      weight: 101\n",
      "spec.http[0].route[0].weight", 10, 15, 0, "0..100" },
    { VS "  - route: []\n", "spec.http[0].route", 8, 12, 0, "not be empty" },
    { VS "  - match: [{uri: {prefix: /}}]\n", "spec.http[0].route", 8, 5, 0,
      "is required" },
    /* 45 */
    { VS "  - route:\n    - destination: {host: orders, port: {name: a}}"
      "\n", "spec.http[0].route[0].destination.port.name", 9, 42, 0,
      "unknown field \"name\"" },
    { VS "  - route:\n    - destination: {host: \"*.carts\"}\n",
      "spec.http[0].route[0].destination.host", 9, 27, 0,
      "wildcard hosts are not supported" },
    { VS "  - match:\n    - uri: {regex: \"/a(b\"}\n"
      "    route:\n    - destination: {host: orders}\n",
      "spec.http[0].match[0].uri.regex", 9, 20, 0, "offset 4" },
    { VS "  - match:\n    - uri: {exact: /a, prefix: /b}\n"
      "    route:\n    - destination: {host: orders}\n",
      "spec.http[0].match[0].uri", 9, 12, 0, "exactly one" },
    { VS "  - match:\n    - headers:\n        X User: {exact: bob}\n"
      "    route:\n    - destination: {host: orders}\n",
      "spec.http[0].match[0].headers.X User", 10, 9, 0,
      "not a valid header name" },
    /* 50 */
    { VS "  - match:\n    - headers:\n        x-user: {suffix: bob}\n"
      "    route:\n    - destination: {host: orders}\n",
      "spec.http[0].match[0].headers.x-user.suffix", 10, 18, 0,
      "unknown field" },
    { VS "  - match:\n    - method: {exact: GET}\n"
      "    route:\n    - destination: {host: orders}\n",
      "spec.http[0].match[0].method", 9, 7, 0, "unsupported field" },
    { VS "  - match:\n    - {}\n    route:\n    - destination: {host: orders}"
      "\n", "spec.http[0].match[0]", 9, 7, 0,
      "needs uri, headers or sourceLabels" },
    { VS "  - route:\n    - destination: {host: orders}\n"
      "    retries: {attempts: 3, retryOn: \"5xx,cancelled\"}\n",
      "spec.http[0].retries.retryOn", 10, 37, 0, "\"cancelled\"" },
    { VS "  - route:\n    - destination: {host: orders}\n"
      "    retries: {attempts: three}\n",
      "spec.http[0].retries.attempts", 10, 25, 0, "integer" },
    /* 55 */
    { VS "  - route:\n    - destination: {host: orders}\n    timeout: 10\n",
      "spec.http[0].timeout", 10, 14, 0, "duration" },
    { VS "  - route:\n    - destination: {host: orders}\n"
      "    mirrorPercentage: {value: 50}\n",
      "spec.http[0].mirrorPercentage", 10, 23, 0, "without mirror" },
    { VS "  - route:\n    - destination: {host: orders}\n"
      "    retries: {perTryTimeout: 2s, backoff: 1s}\n",
      "spec.http[0].retries.backoff", 10, 34, 0, "unsupported field" },
    { "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
      "spec:\n  hosts: []\n  http: []\n", "spec.hosts", 5, 10, 0,
      "not be empty" },
    { "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
      "spec:\n  hosts: [orders]\n  gateways: [a/b/c]\n",
      "spec.gateways[0]", 6, 14, 0, "is not a gateway" },
    /* 60: several documents */
    { DR "---\n" DR, "metadata.name", 11, 9, 1, "duplicate DestinationRule" },
    { DR "---\n" "apiVersion: mesh/v1\nkind: DestinationRule\n"
      "metadata: {name: d2}\nspec: {host: orders}\n", "spec.host", 11, 14, 1,
      "already has a DestinationRule" },
    { DR "---\n" VS "  - route:\n    - destination: {host: orders}\n"
      "    timeout: 1x\n", "spec.http[0].timeout", 17, 14, 1, "duration" },
    { DR "---\n---\n" VS "  - route:\n    - destination: {host: orders}\n"
      "      weight: 0\n", "spec.http[0].route[0].weight", 18, 15, 2,
      "add up to 0" },
    { VS "  - route:\n    - destination: {host: orders, subset: \"v 1\"}\n",
      "spec.http[0].route[0].destination.subset", 9, 43, 0,
      "not a valid subset name" },
    /* 65 */
    { DR "  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n"
      "        httpQueryParameterName: \"a=b\"\n",
      "spec.trafficPolicy.loadBalancer.consistentHash."
      "httpQueryParameterName", 10, 33, 0, "query parameter" },
    { DR "  host2: x\n", "spec.host2", 7, 3, 0, "unknown field" },
    { DR "  trafficPolicy: []\n", "spec.trafficPolicy", 7, 18, 0,
      "must be a mapping" },
    { "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
      "spec:\n  hosts: [orders, orders]\n  http: []\n", "spec.hosts[1]", 5,
      19, 0, "listed twice" },
    { DR "  trafficPolicy:\n    connectionPool:\n      http:\n"
      "        h2UpgradePolicy: UPGRADE\n",
      "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy", 10, 26, 0,
      "nginx speaks HTTP/1.1" },
    /* 70 */
    { DR "  trafficPolicy:\n    connectionPool:\n      http:\n"
      "        maxConcurrentStreams: 10\n",
      "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams", 10, 9,
      0, "unsupported field" },
    { DR "  trafficPolicy:\n    connectionPool:\n      http:\n"
      "        useClientProtocol: true\n",
      "spec.trafficPolicy.connectionPool.http.useClientProtocol", 10, 28, 0,
      "HTTP/1.1 to upstreams" },
    { DR "  trafficPolicy:\n    connectionPool:\n      tcp:\n"
      "        tcpKeepalive: {time: 40000s}\n",
      "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time", 10, 30, 0,
      "at most 32767s" },
    { DR "  trafficPolicy:\n    connectionPool:\n      tcp:\n"
      "        tcpKeepalive: {probes: 128}\n",
      "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.probes", 10, 32,
      0, "1..127" },
    { DR "  trafficPolicy:\n    connectionPool:\n      http:\n"
      "        idleTimeout: 0s\n",
      "spec.trafficPolicy.connectionPool.http.idleTimeout", 10, 22, 0,
      "at least 1ms" },
    /* 75 */
    { DR "  trafficPolicy:\n    connectionPool:\n      http:\n"
      "        maxRetries: -1\n",
      "spec.trafficPolicy.connectionPool.http.maxRetries", 10, 21, 0,
      "0..2147483647" },
    { DR "  trafficPolicy:\n    connectionPool: {grpc: {}}\n",
      "spec.trafficPolicy.connectionPool.grpc", 8, 22, 0,
      "unknown field \"grpc\"; supported: tcp, http" },
    { DR "  trafficPolicy:\n    connectionPool:\n      tcp:\n"
      "        tcpKeepalive: {time: 500ms}\n",
      "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time", 10, 30, 0,
      "at least 1000ms" },
    /* request shaping: fault */
    { VS RT "    fault: {delay: {exponentialDelay: 1s}}\n",
      "spec.http[0].fault.delay.exponentialDelay", 10, 21, 0,
      "unsupported field \"exponentialDelay\"" },
    /* 79 */
    { VS RT "    fault: {abort: {grpcStatus: UNAVAILABLE}}\n",
      "spec.http[0].fault.abort.grpcStatus", 10, 21, 0,
      "unsupported field \"grpcStatus\"" },
    { VS RT "    fault: {abort: {http2Error: REFUSED_STREAM}}\n",
      "spec.http[0].fault.abort.http2Error", 10, 21, 0,
      "unsupported field \"http2Error\"" },
    { VS RT "    fault: {}\n", "spec.http[0].fault", 10, 12, 0,
      "needs delay, abort or both" },
    { VS RT "    fault: {delay: {percentage: {value: 5}}}\n",
      "spec.http[0].fault.delay.fixedDelay", 10, 20, 0, "is required" },
    { VS RT "    fault: {delay: {fixedDelay: 1s, percent: 5, "
      "percentage: {value: 5}}}\n",
      "spec.http[0].fault.delay.percentage", 10, 49, 0, "not both" },
    /* 84 */
    { VS RT "    fault: {abort: {httpStatus: 500, percentage: "
      "{value: 100.5}}}\n",
      "spec.http[0].fault.abort.percentage.value", 10, 58, 0,
      "number 0..100" },
    { VS RT "    fault: {abort: {httpStatus: 500, percentage: {}}}\n",
      "spec.http[0].fault.abort.percentage.value", 10, 50, 0,
      "is required" },
    { VS RT "    fault: {abort: {httpStatus: 700}}\n",
      "spec.http[0].fault.abort.httpStatus", 10, 33, 0, "200..599" },
    { VS RT "    fault: {abort: {percentage: {value: 1}}}\n",
      "spec.http[0].fault.abort.httpStatus", 10, 20, 0, "is required" },
    { VS RT "    fault: {delay: {fixedDelay: 0s}}\n",
      "spec.http[0].fault.delay.fixedDelay", 10, 33, 0, "at least 1ms" },
    /* 89: rewrite */
    { VS RT "    rewrite: {uriRegexRewrite: {match: a, rewrite: b}}\n",
      "spec.http[0].rewrite.uriRegexRewrite", 10, 15, 0,
      "unsupported field \"uriRegexRewrite\"" },
    { VS RT "    rewrite: {}\n", "spec.http[0].rewrite", 10, 14, 0,
      "needs uri, authority or both" },
    { VS RT "    rewrite: {uri: v2}\n", "spec.http[0].rewrite.uri", 10, 20,
      0, "must start with \"/\"" },
    { VS RT "    rewrite: {authority: \"a b\"}\n",
      "spec.http[0].rewrite.authority", 10, 26, 0, "not an authority" },
    /* redirect, directResponse */
    { VS "  - redirect: {uri: /x, derivePort: FROM_REQUEST_PORT}\n",
      "spec.http[0].redirect.derivePort", 8, 25, 0,
      "unsupported field \"derivePort\"" },
    /* 94 */
    { VS "  - redirect: {uri: /x}\n" RT_ONLY,
      "spec.http[0].route", 9, 5, 0, "cannot have route too" },
    { VS "  - redirect: {uri: /x}\n    directResponse: {status: 404}\n",
      "spec.http[0].directResponse", 9, 5, 0, "not both" },
    { VS "  - redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500}}\n",
      "spec.http[0].fault", 9, 5, 0, "cannot have fault too" },
    { VS "  - directResponse: {status: 404}\n    rewrite: {uri: /x}\n",
      "spec.http[0].rewrite", 9, 5, 0, "cannot have rewrite too" },
    { VS "  - redirect: {uri: /x, redirectCode: 304}\n",
      "spec.http[0].redirect.redirectCode", 8, 39, 0, "not one of 301" },
    /* 99 */
    { VS "  - redirect: {scheme: ftp}\n",
      "spec.http[0].redirect.scheme", 8, 24, 0, "http or https" },
    { VS "  - redirect: {redirectCode: 302}\n", "spec.http[0].redirect", 8,
      15, 0, "needs uri, authority, scheme or port" },
    { VS "  - directResponse: {status: 200, body: {bytes: \"!!!!\"}}\n",
      "spec.http[0].directResponse.body.bytes", 8, 49, 0, "not base64" },
    { VS "  - directResponse: {status: 200, body: {bytes: \"AA==\"}}\n",
      "spec.http[0].directResponse.body.bytes", 8, 49, 0, "without NUL" },
    { VS "  - directResponse: {status: 99}\n",
      "spec.http[0].directResponse.status", 8, 30, 0, "200..599" },
    /* 104 */
    { VS "  - directResponse: {body: {string: x}}\n",
      "spec.http[0].directResponse.status", 8, 21, 0, "is required" },
    { VS "  - directResponse:\n      status: 200\n"
      "      body: {string: x, bytes: eA==}\n",
      "spec.http[0].directResponse.body.bytes", 10, 25, 0, "not both" },
    { VS "  - match: [{uri: {prefix: /}}]\n",
      "spec.http[0].route", 8, 5, 0, "or redirect, directResponse or delegate" },
    /* headers */
    { VS RT "    headers: {request: {set: {\":authority\": a}}}\n",
      "spec.http[0].headers.request.set.:authority", 10, 31, 0,
      "pseudo-header" },
    { VS RT "    headers: {request: {add: {Host: a}}}\n",
      "spec.http[0].headers.request.add.Host", 10, 31, 0,
      "use rewrite.authority" },
    /* 109 */
    { VS RT "    headers: {response: {set: {\"x y\": a}}}\n",
      "spec.http[0].headers.response.set.x y", 10, 32, 0,
      "not a valid header name" },
    { VS RT "    headers: {request: {set: {x-a: \"a\\r\\nb: c\"}}}\n",
      "spec.http[0].headers.request.set.x-a", 10, 36, 0,
      "control character" },
    { VS RT "    headers: {request: {set: {x-a: \"a\\0b\"}}}\n",
      "spec.http[0].headers.request.set.x-a", 10, 36, 0,
      "control character" },
    { VS RT "    headers: {request: {set: {x-a: \"%HOSTNAME%\"}}}\n",
      "spec.http[0].headers.request.set.x-a", 10, 36, 0,
      "%VARIABLE% substitution is not supported" },
    { VS RT "    headers: {response: {remove: [X-A, x-a]}}\n",
      "spec.http[0].headers.response.remove[1]", 10, 40, 0,
      "listed twice" },
    /* 114 */
    { VS RT "    headers: {request: {set: {X-A: a, x-a: b}}}\n",
      "spec.http[0].headers.request.set.x-a", 10, 39, 0, "listed twice" },
    { VS RT "    headers: {req: {}}\n", "spec.http[0].headers.req", 10, 15,
      0, "unknown field \"req\"" },
    { VS RT "    headers: {request: {append: {}}}\n",
      "spec.http[0].headers.request.append", 10, 25, 0,
      "unknown field \"append\"" },
    { VS "  - route:\n    - destination: {host: orders}\n"
      "      headers: {response: {set: {\":status\": \"200\"}}}\n",
      "spec.http[0].route[0].headers.response.set.:status", 10, 34, 0,
      "pseudo-header" },
    { VS RT "    headers: {request: {set: {x-a: 1}}}\n",
      "spec.http[0].headers.request.set.x-a", 10, 36, 0,
      "must be a string" },
    /* 119: retries */
    { VS RT "    retries: {attempts: 2, retryOn: \"5xx,unavailable\"}\n",
      "spec.http[0].retries.retryOn", 10, 37, 0, "a gRPC status" },
    { VS RT "    retries: {attempts: 2, retryOn: \"refused-stream, "
      "refused-stream\"}\n",
      "spec.http[0].retries.retryOn", 10, 37, 0, "listed twice" },
    /* 121: ignoreUriCase, sourceLabels */
    { VS "  - match:\n    - uri: {prefix: /a}\n      ignoreUriCase: \"true\"\n"
      RT_ONLY, "spec.http[0].match[0].ignoreUriCase", 10, 22, 0,
      "must be true or false" },
    { VS "  - match:\n    - ignoreUriCase: true\n" RT_ONLY,
      "spec.http[0].match[0]", 9, 7, 0,
      "needs uri, headers or sourceLabels" },
    { VS "  - match:\n    - sourceLabels: {}\n" RT_ONLY,
      "spec.http[0].match[0].sourceLabels", 9, 21, 0,
      "must hold at least one label" },
    { VS "  - match:\n    - sourceLabels: {\"a b\": x}\n" RT_ONLY,
      "spec.http[0].match[0].sourceLabels.a b", 9, 22, 0,
      "label name \"a b\" is not a valid name" },
    { VS "  - match:\n    - sourceLabels: {app: 1}\n" RT_ONLY,
      "spec.http[0].match[0].sourceLabels.app", 9, 27, 0,
      "must be a string" },
    /* 126 */
    { VS "  - match:\n    - sourceLabels: [app]\n" RT_ONLY,
      "spec.http[0].match[0].sourceLabels", 9, 21, 0,
      "must be a mapping" },
    /* 127: corsPolicy */
    { VS RT "    corsPolicy: {allowMethods: [GET, FETCH]}\n",
      "spec.http[0].corsPolicy.allowMethods[1]", 10, 38, 0,
      "\"FETCH\" is not an HTTP method" },
    { VS RT "    corsPolicy: {allowMethods: [get]}\n",
      "spec.http[0].corsPolicy.allowMethods[0]", 10, 33, 0,
      "not an HTTP method" },
    { VS RT "    corsPolicy: {allowMethods: [\"*\"]}\n",
      "spec.http[0].corsPolicy.allowMethods[0]", 10, 33, 0,
      "not an HTTP method" },
    { VS RT "    corsPolicy: {allowHeaders: [\"x y\"]}\n",
      "spec.http[0].corsPolicy.allowHeaders[0]", 10, 33, 0,
      "not a valid header name" },
    /* 131 */
    { VS RT "    corsPolicy: {exposeHeaders: [X-A, x-a]}\n",
      "spec.http[0].corsPolicy.exposeHeaders[1]", 10, 39, 0,
      "listed twice" },
    { VS RT "    corsPolicy: {maxAge: 1.5s}\n",
      "spec.http[0].corsPolicy.maxAge", 10, 26, 0, "whole seconds" },
    { VS RT "    corsPolicy: {maxAge: 0s}\n",
      "spec.http[0].corsPolicy.maxAge", 10, 26, 0, "at least 1000ms" },
    { VS RT "    corsPolicy: {allowOrigins: [{exact: a}], allowOrigin: [b]}"
      "\n", "spec.http[0].corsPolicy.allowOrigin", 10, 46, 0,
      "not both" },
    { VS RT "    corsPolicy: {allowOrigins: [{regex: \"(\"}]}\n",
      "spec.http[0].corsPolicy.allowOrigins[0].regex", 10, 41, 0,
      "parenthesis" },
    /* 136 */
    { VS RT "    corsPolicy: {allowOrigins: [{suffix: a}]}\n",
      "spec.http[0].corsPolicy.allowOrigins[0].suffix", 10, 34, 0,
      "unknown field \"suffix\"" },
    { VS RT "    corsPolicy: {allowOrigins: [{exact: a, prefix: b}]}\n",
      "spec.http[0].corsPolicy.allowOrigins[0]", 10, 33, 0,
      "exactly one of exact, prefix, regex" },
    { VS RT "    corsPolicy: {allowOrigin: [\"\"]}\n",
      "spec.http[0].corsPolicy.allowOrigin[0]", 10, 32, 0,
      "must not be empty" },
    { VS RT "    corsPolicy: {unmatchedPreflights: DROP}\n",
      "spec.http[0].corsPolicy.unmatchedPreflights", 10, 39, 0,
      "not one of UNSPECIFIED, FORWARD, IGNORE" },
    { VS RT "    corsPolicy: {allowCredentials: maybe}\n",
      "spec.http[0].corsPolicy.allowCredentials", 10, 36, 0,
      "must be true or false" },
    /* 141 */
    { VS RT "    corsPolicy: {filterEnabled: 1}\n",
      "spec.http[0].corsPolicy.filterEnabled", 10, 18, 0,
      "unknown field \"filterEnabled\"" },
    { VS RT "    corsPolicy: [GET]\n",
      "spec.http[0].corsPolicy", 10, 17, 0, "must be a mapping" },
    { VS "  - redirect: {uri: /x}\n    mirror: {host: orders}\n",
      "spec.http[0].mirror", 9, 13, 0, "cannot have mirror too" },
    { VS RT "    mirrors:\n    - percentage: {value: 5}\n",
      "spec.http[0].mirrors[0].destination", 11, 7, 0, "is required" },
    /* 145 */
    { VS RT "    mirror: {host: orders}\n    mirrorPercentage: {value: 1}\n"
      "    mirror_percent: 2\n",
      "spec.http[0].mirror_percent", 12, 5, 0, "not two" },
    { VS RT "    mirrors:\n    - destination: {host: orders, subset: v9}\n",
      "spec.http[0].mirrors[0].destination.subset", 11, 43, 0,
      "is not defined by any DestinationRule" },
    /* delegation */
    { VS "  - match: [{uri: {prefix: /a}}]\n    delegate: {name: d}\n"
      RT_ONLY, "spec.http[0].route", 10, 5, 0, "cannot have route too" },
    { VS "  - delegate: {namespace: x}\n", "spec.http[0].delegate.name", 8,
      15, 0, "name: is required" },
    { "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: d}\n"
      "spec:\n  http:\n  - delegate: {name: e}\n", "spec.http[0].delegate",
      6, 5, 0, "one level of delegation" },
    { "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: d}\n"
      "spec:\n  gateways: [mesh]\n  http:\n" RT, "spec.gateways", 5, 3, 0,
      "has no gateways" },
    /* portLevelSettings */
    { DR "  trafficPolicy:\n    portLevelSettings:\n"
      "    - port: {number: 80}\n    - port: {number: 80}\n",
      "spec.trafficPolicy.portLevelSettings[1].port.number", 10, 22, 0,
      "port 80 has settings already" },
    { DR "  trafficPolicy:\n    portLevelSettings:\n"
      "    - port: {number: 0}\n",
      "spec.trafficPolicy.portLevelSettings[0].port.number", 9, 22, 0,
      "65535" },
    /* 153 */
    { DR "  trafficPolicy:\n    portLevelSettings:\n"
      "    - port: {number: 80}\n      tls: {mode: MUTUAL}\n",
      "spec.trafficPolicy.portLevelSettings[0].tls", 10, 12, 0,
      "MUTUAL needs clientCertificate" },
    { DR "  trafficPolicy:\n    portLevelSettings:\n"
      "    - loadBalancer: {simple: RANDOM}\n",
      "spec.trafficPolicy.portLevelSettings[0].port", 9, 7, 0,
      "is required" },
    /* 155: trafficPolicy.tls */
    { DR "  trafficPolicy:\n    tls: {mode: MUTUAL, clientCertificate: /c}\n",
      "spec.trafficPolicy.tls", 8, 10, 0, "MUTUAL needs privateKey" },
    { DR "  trafficPolicy:\n    tls: {mode: STRICT}\n",
      "spec.trafficPolicy.tls.mode", 8, 17, 0, "not one of DISABLE" },
    { DR "  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: ca.pem}\n",
      "spec.trafficPolicy.tls.caCertificates", 8, 41, 0, "absolute path" },
    { DR "  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, caCertificates: /c}\n",
      "spec.trafficPolicy.tls", 8, 10, 0, "takes no caCertificates" },
    { DR "  trafficPolicy:\n"
      "    tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}\n",
      "spec.trafficPolicy.tls.insecureSkipVerify", 8, 25, 0,
      "no caCertificates, caCrl or subjectAltNames" },
    /* 160 */
    { DR "  trafficPolicy:\n    tls: {mode: SIMPLE, sni: \"a b\"}\n",
      "spec.trafficPolicy.tls.sni", 8, 30, 0, "not a host name" },
    { DR "  trafficPolicy:\n    tls: {mode: SIMPLE, caCrl: /crl.pem}\n",
      "spec.trafficPolicy.tls", 8, 10, 0, "caCrl needs caCertificates" },
    { DR "  trafficPolicy:\n    tls: {mode: SIMPLE, credentialName: x}\n",
      "spec.trafficPolicy.tls.credentialName", 8, 25, 0,
      "give the files instead" },
    { DR "  trafficPolicy:\n    portLevelSettings:\n"
      "    - port: {number: 31443}\n"
      "      tls: {mode: MUTUAL, credentialName: client-credential}\n",
      "spec.trafficPolicy.portLevelSettings[0].tls.credentialName", 10, 27,
      0, "give the files instead" },
    /* 164: Gateways */
    { GW "  - port: {number: 27017, name: mongo, protocol: MONGO}\n"
      "    hosts: [\"*\"]\n", "spec.servers[0].port.protocol", 6, 50, 0,
      "nginx does not read MONGO, REDIS or MYSQL: give TCP" },
    { GW "  - port: {number: 443, protocol: HTTPS}\n    hosts: [\"*\"]\n",
      "spec.servers[0].tls", 6, 5, 0, "is required" },
    { GW "  - port: {number: 443, protocol: HTTPS}\n    hosts: [\"*\"]\n"
      "    tls: {mode: PASSTHROUGH}\n", "spec.servers[0].tls.mode", 8, 17, 0,
      "ngx_mesh supports SIMPLE" },
    { GW "  - port: {number: 80, protocol: HTTP}\n    hosts: [\"a*b\"]\n",
      "spec.servers[0].hosts[0]", 7, 13, 0, "is not a valid host" },
    { GW "  - port: {number: 80, protocol: HTTP}\n    hosts: [\"x.y/a.b\"]\n",
      "spec.servers[0].hosts[0]", 7, 13, 0, "the namespace before" },
    /* 169 */
    { GW "  - port: {number: 80, protocol: HTTP}\n    hosts: [\"*\"]\n"
      "    bind: 0.0.0.0\n", "spec.servers[0].bind", 8, 5, 0,
      "unsupported field" },
    { GW "  - port: {number: 0, protocol: HTTP}\n    hosts: [\"*\"]\n",
      "spec.servers[0].port.number", 6, 20, 0, "1..65535" },
    { GW "  - port: {number: 80, protocol: HTTP}\n    hosts: [\"*\"]\n"
      "    tls: {httpsRedirect: true, minProtocolVersion: TLSV1_2}\n",
      "spec.servers[0].tls.minProtocolVersion", 8, 32, 0,
      "unsupported field" },
    { GW "  - port: {number: 80, protocol: HTTP}\n    hosts: [\"*\"]\n"
      "    tls: {mode: SIMPLE}\n", "spec.servers[0].tls.mode", 8, 10, 0,
      "an HTTP server has no TLS mode" },
    { GVS("v1", "[gw]") "---\n" GVS("v2", "[default/gw]"), "spec.hosts[0]", 15, 11, 1,
      "host \"*\" at gateway default/gw already has a VirtualService" },
    /* 174 */
    { GVS("v1", "[mesh, gw]") "---\n" GVS("v2", "[mesh]"), "spec.hosts[0]", 15, 11, 1,
      "host \"*\" already has a VirtualService" },
    /* 175: Gateway servers for the stream module: TCP, TLS PASSTHROUGH */
    { GW "  - port: {number: 31400, protocol: TCP}\n    hosts: [\"*\"]\n"
      "    tls: {mode: PASSTHROUGH}\n", "spec.servers[0].tls", 8, 5, 0,
      "a TCP server has no TLS (use TLS with mode PASSTHROUGH)" },
    { GW "  - port: {number: 443, protocol: TLS}\n    hosts: [\"*\"]\n",
      "spec.servers[0].tls", 6, 5, 0, "is required" },
    { GW "  - port: {number: 443, protocol: tls}\n    hosts: [\"*\"]\n"
      "    tls: {mode: SIMPLE}\n", "spec.servers[0].tls.mode", 8, 17, 0,
      "\"SIMPLE\": a TLS server passes TLS through by SNI: mode "
      "PASSTHROUGH only (nginx terminates TLS at HTTPS servers)" },
    { GW "  - port: {number: 443, protocol: TLS}\n    hosts: [\"*\"]\n"
      "    tls: {mode: AUTO_PASSTHROUGH}\n", "spec.servers[0].tls.mode", 8,
      17, 0, "mode PASSTHROUGH only" },
    { GW "  - port: {number: 443, protocol: TLS}\n    hosts: [\"*\"]\n"
      "    tls: {mode: PASSTHROUGH, credentialName: c}\n",
      "spec.servers[0].tls.credentialName", 8, 30, 0,
      "unsupported field \"credentialName\": ngx_mesh supports mode" },
    /* 180 */
    { GW "  - port: {number: 443, protocol: TLS}\n    hosts: [\"*\"]\n"
      "    tls: {}\n", "spec.servers[0].tls.mode", 8, 10, 0, "is required" },
    { GW "  - port: {number: 443, protocol: TLS}\n    hosts: [\"*\"]\n"
      "    tls: {mode: PASSTHROUGH, httpsRedirect: true}\n",
      "spec.servers[0].tls.httpsRedirect", 8, 30, 0, "unsupported field" },
    { GW "  - port: {number: 443, protocol: GRPC}\n    hosts: [\"*\"]\n",
      "spec.servers[0].port.protocol", 6, 35, 0,
      "\"GRPC\" is not one of HTTP, HTTPS, HTTP2, TCP, TLS" },
    { GW "  - port: {number: 80, protocol: HTTP}\n    hosts: [a.example]\n"
      "  - port: {number: 80, protocol: TCP}\n    hosts: [b.example]\n",
      "spec.servers[1].port", 8, 11, 0,
      "port 80 already has an HTTP server in this Gateway (servers[0])" },
    { GW "  - port: {number: 9000, protocol: TCP}\n    hosts: [\"*\"]\n"
      "  - port: {number: 9000, protocol: TLS}\n    hosts: [\"*\"]\n"
      "    tls: {mode: PASSTHROUGH}\n",
      "spec.servers[1].port", 8, 11, 0, "port 9000 already has a TCP server" },
    /* 185 */
    { GW "  - port: {number: 443, protocol: TLS}\n    hosts: [a.example]\n"
      "    tls: {mode: PASSTHROUGH}\n"
      "  - port: {number: 443, protocol: HTTPS}\n    hosts: [b.example]\n"
      "    tls: {mode: SIMPLE}\n",
      "spec.servers[1].port", 9, 11, 0, "port 443 already has a TLS server" },
    { GW "  - port: {number: 9000, protocol: TCP}\n    hosts: [a.example]\n"
      "  - port: {number: 9000, protocol: TCP}\n    hosts: [b.example]\n",
      "spec.servers[1].port", 8, 11, 0, "port 9000 already has a TCP server" },
    { GW "  - port: {number: 8443, protocol: HTTPS}\n    hosts: [\"*\"]\n"
      "    tls: {mode: SIMPLE}\n"
      "  - port: {number: 8443, protocol: TLS}\n    hosts: [b.example]\n"
      "    tls: {mode: PASSTHROUGH}\n",
      "spec.servers[1].port", 9, 11, 0,
      "port 8443 already has an HTTP server" },
    /* tls routes */
    { TVS "  - match:\n    - port: 443\n" TR,
      "spec.tls[0].match[0].sniHosts", 9, 7, 0, "is required" },
    { TVS "  - match:\n    - sniHosts: [a.c.example]\n" TR,
      "spec.tls[0].match[0].sniHosts[0]", 9, 18, 0,
      "sniHosts \"a.c.example\" is not one of the VirtualService's hosts" },
    /* 190: broader than the VirtualService's host, or its suffix alone */
    { TVS "  - match:\n    - sniHosts: [\"*.example\"]\n" TR,
      "spec.tls[0].match[0].sniHosts[0]", 9, 18, 0,
      "sniHosts \"*.example\" is not one of" },
    { TVS "  - match:\n    - sniHosts: [a.b.example, b.example]\n" TR,
      "spec.tls[0].match[0].sniHosts[1]", 9, 31, 0,
      "sniHosts \"b.example\" is not one of" },
    { TVS "  - match:\n    - sniHosts: [\"a b.b.example\"]\n" TR,
      "spec.tls[0].match[0].sniHosts[0]", 9, 18, 0, "is not a valid host" },
    { TVS "  - match:\n    - sniHosts: [x.b.example, X.B.example]\n" TR,
      "spec.tls[0].match[0].sniHosts[1]", 9, 31, 0,
      "sniHosts \"x.b.example\" is listed twice" },
    { TVS "  - match:\n    - sniHosts: []\n" TR,
      "spec.tls[0].match[0].sniHosts", 9, 17, 0, "must not be empty" },
    /* 195 */
    { TVS "  - match:\n    - sniHosts: [x.b.example]\n"
      "      destinationSubnets: [10.0.0.0/8]\n" TR,
      "spec.tls[0].match[0].destinationSubnets", 10, 7, 0,
      "unsupported field \"destinationSubnets\": ngx_mesh supports "
      "sniHosts, port" },
    { TVS "  - match:\n    - {sniHosts: [x.b.example], sourceLabels: {a: b}}\n"
      TR, "spec.tls[0].match[0].sourceLabels", 9, 33, 0,
      "unsupported field" },
    { TVS "  - match:\n    - {sniHosts: [x.b.example], port: 0}\n" TR,
      "spec.tls[0].match[0].port", 9, 39, 0, "1..65535" },
    { TVS "  - match:\n    - sniHosts: [x.b.example]\n",
      "spec.tls[0].route", 8, 5, 0, "is required" },
    { TVS "  - route:\n    - destination: {host: web}\n",
      "spec.tls[0].match", 8, 5, 0, "is required" },
    /* 200 */
    { TVS "  - match: []\n" TR, "spec.tls[0].match", 8, 12, 0,
      "must not be empty" },
    { TVS "  - match:\n    - sniHosts: [x.b.example]\n" TR
      "    timeout: 1s\n", "spec.tls[0].timeout", 12, 5, 0,
      "unknown field \"timeout\"; supported: match, route" },
    { TVS "  - match:\n    - sniHosts: [x.b.example]\n"
      "    route:\n    - destination: {host: web, subset: v9}\n",
      "spec.tls[0].route[0].destination.subset", 11, 40, 0,
      "subset \"v9\" of host \"web\" is not" },
    { "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
      "metadata: {name: t}\nspec:\n  tls:\n  - match:\n"
      "    - sniHosts: [a.example]\n" TR, "spec.tls", 5, 3, 0,
      "a delegate VirtualService (one without hosts) delegates http routes "
      "only" },
    { TVS "  - match:\n    - sniHosts: [x.b.example]\n"
      "    route:\n    - destination: {host: web}\n      weight: 60\n",
      "spec.tls[0].route[0].weight", 12, 15, 0, "add up to 60, not 100" },
    /* 205 */
    { "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
      "metadata: {name: t}\nspec:\n  hosts: [web]\n  exportTo: [\".\"]\n"
      "  tls: []\n", "spec.exportTo", 6, 3, 0,
      "unsupported field \"exportTo\": ngx_mesh supports hosts, http, tcp, "
      "tls, gateways" },
    { "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
      "metadata: {name: t}\nspec:\n  hosts: [web]\n  tls: []\n",
      "spec.tls", 6, 8, 0, "must not be empty" },
    /* a tcp or tls route's destinations carry no headers */
    { TVS "  - match:\n    - sniHosts: [x.b.example]\n"
      "    route:\n    - destination: {host: web}\n"
      "      headers: {request: {set: {a: b}}}\n",
      "spec.tls[0].route[0].headers", 12, 7, 0,
      "unknown field \"headers\"; supported: destination, weight" },
    { "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
      "metadata: {name: t}\nspec:\n  hosts: [web]\n  tcp:\n"
      "  - route:\n    - destination: {host: web}\n"
      "      headers: {request: {set: {a: b}}}\n",
      "spec.tcp[0].route[0].headers", 9, 7, 0,
      "unknown field \"headers\"; supported: destination, weight" },
};


START_TEST(policy_parse_bad_document_names_field_line_column)
{
    const bad_t      *b = &bad[_i];
    rd_policy_t      *p;
    rd_policy_err_t   e;

    p = rd_policy_parse("pol", b->yaml, strlen(b->yaml), &e);
    if (p) {
        /* cross-document refusals come from the check */
        ck_assert_int_ne(rd_policy_check(p, NULL, 0, &e), 0);
        rd_policy_free(p);
    }

    ck_assert_msg(strstr(e.msg, b->msg) != NULL,
                  "case %d: message \"%s\" lacks \"%s\"", _i, e.msg, b->msg);
    ck_assert_msg(strcmp(e.field, b->field) == 0,
                  "case %d: field \"%s\", want \"%s\" (%s)", _i, e.field,
                  b->field, e.msg);
    ck_assert_msg(e.line == b->line && e.column == b->column,
                  "case %d: at %d:%d, want %d:%d (%s)", _i, e.line, e.column,
                  b->line, b->column, e.msg);
    ck_assert_msg(e.document == b->document, "case %d: document %d, want %d",
                  _i, e.document, b->document);
}
END_TEST


static json_t *
normalized(const char *yaml, size_t *ndocs)
{
    json_t           *v;
    mesh_buf_t        b;
    rd_policy_t      *p;
    json_error_t      jerr;
    rd_policy_err_t   e;

    p = rd_policy_parse("pol", yaml, strlen(yaml), &e);
    ck_assert_msg(p != NULL, "refused: %s (field %s, %d:%d)", e.msg, e.field,
                  e.line, e.column);
    ck_assert_msg(rd_policy_check(p, NULL, 0, &e) == 0, "%s", e.msg);

    mesh_buf_init(&b, 0);
    mesh_buf_addc(&b, '[');
    mesh_buf_add(&b, p->snap, p->snap_len);
    mesh_buf_addc(&b, ']');

    v = json_loadb(b.data, b.len, 0, &jerr);
    ck_assert_msg(v != NULL, "snap not JSON: %s", jerr.text);
    ck_assert(json_equal(v, p->docs));

    *ndocs = json_array_size(v);
    mesh_buf_free(&b);
    rd_policy_free(p);

    return v;
}


static void
expect_json(json_t *got, const char *want)
{
    char          *s;
    json_t        *w;
    json_error_t   jerr;

    w = json_loads(want, 0, &jerr);
    ck_assert_msg(w != NULL, "bad expectation: %s", jerr.text);

    s = json_dumps(got, JSON_COMPACT);
    ck_assert_msg(json_equal(got, w), "got %s\nwant %s", s, want);
    free(s);
    json_decref(w);
}


START_TEST(policy_parse_destination_rule_normalizes)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "# comment\n"
        "apiVersion: networking.istio.io/v1alpha3\n"
        "kind: DestinationRule\n"
        "metadata:\n"
        "  name: orders\n"
        "  namespace: prod\n"
        "  labels: {app: orders}\n"
        "  annotations: {note: \"anything\"}\n"
        "spec:\n"
        "  host: orders\n"
        "  trafficPolicy:\n"
        "    loadBalancer: {simple: LEAST_CONN}\n"
        "    outlierDetection:\n"
        "      consecutive5xxErrors: 5\n"
        "      consecutiveErrors: 7\n"
        "      interval: 1.5s\n"
        "      baseEjectionTime: 1m\n"
        "      maxEjectionPercent: 50\n"
        "      minHealthPercent: 0\n"
        "      splitExternalLocalOriginErrors: true\n"
        "      consecutiveLocalOriginFailures: 2\n"
        "    connectionPool:\n"
        "      tcp: {maxConnections: 100, connectTimeout: 250ms,\n"
        "            tcpKeepalive: {time: 7s, interval: 1m, probes: 3}}\n"
        "      http: {http1MaxPendingRequests: 1, http2MaxRequests: 20,\n"
        "             maxRequestsPerConnection: 3, maxRetries: 2,\n"
        "             idleTimeout: 1.5s, h2UpgradePolicy: DO_NOT_UPGRADE,\n"
        "             useClientProtocol: false}\n"
        "  subsets:\n"
        "  - name: v1\n"
        "    labels: {version: v1, \"zone\": \"a\"}\n"
        "  - name: v2\n"
        "    labels: {version: 'v2'}\n"
        "    trafficPolicy:\n"
        "      loadBalancer:\n"
        "        consistentHash:\n"
        "          httpCookie: {name: sid, ttl: 0s, path: /}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"DestinationRule\",\"name\":\"orders\","
        "\"host\":\"orders\",\"trafficPolicy\":{"
        "\"loadBalancer\":{\"simple\":\"LEAST_REQUEST\"},"
        "\"outlierDetection\":{\"consecutive5xxErrors\":5,"
        "\"consecutiveGatewayErrors\":7,\"intervalMs\":1500,"
        "\"baseEjectionTimeMs\":60000,\"maxEjectionPercent\":50,"
        "\"minHealthPercent\":0,\"splitExternalLocalOriginErrors\":true,"
        "\"consecutiveLocalOriginFailures\":2},"
        "\"connectionPool\":{\"tcp\":{\"maxConnections\":100,"
        "\"connectTimeoutMs\":250,\"tcpKeepalive\":{\"timeMs\":7000,"
        "\"intervalMs\":60000,\"probes\":3}},\"http\":{"
        "\"http1MaxPendingRequests\":1,\"http2MaxRequests\":20,"
        "\"maxRequestsPerConnection\":3,\"maxRetries\":2,"
        "\"idleTimeoutMs\":1500}}},"
        "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\","
        "\"zone\":\"a\"}},{\"name\":\"v2\",\"labels\":{\"version\":\"v2\"},"
        "\"trafficPolicy\":{\"loadBalancer\":{\"consistentHash\":"
        "{\"httpCookie\":{\"name\":\"sid\",\"ttlMs\":0,\"path\":\"/\"}}}}}]}");
    json_decref(v);
}
END_TEST


/* localityLbSetting and warmupDurationSecs: Istio's rules */

#define LB  DR "  trafficPolicy:\n    loadBalancer:\n"

static const struct {
    const char  *yaml;
    const char  *field;
    const char  *msg;
} bad_locality[] = {
    { LB "      localityLbSetting:\n"
         "        distribute: [{from: a/*, to: {b/*: 100}}]\n"
         "        failover: [{from: a, to: b}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting",
      "distribute and failover cannot be given together" },
    { LB "      localityLbSetting:\n"
         "        distribute: [{from: a/*, to: {b/*: 60, c: 30}}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
      "add up to 90, not 100" },
    { LB "      localityLbSetting:\n"
         "        distribute: [{from: a/*, to: {b/*: 0, c: 100}}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
      "1..100" },
    { LB "      localityLbSetting:\n"
         "        distribute: [{from: a/*, to: {b/*: 50, b/z1: 50}}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
      "overlaps" },
    { LB "      localityLbSetting:\n"
         "        distribute: [{from: \"*/z\", to: {b: 100}}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from",
      "is not a locality" },
    { LB "      localityLbSetting:\n"
         "        distribute: [{from: a/b/c/d, to: {b: 100}}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from",
      "is not a locality" },
    { LB "      localityLbSetting:\n"
         "        distribute: [{to: {b: 100}}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from",
      "is required" },
    { LB "      localityLbSetting:\n"
         "        failover: [{from: a, to: a}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
      "to itself" },
    { LB "      localityLbSetting:\n"
         "        failover: [{from: a/z1, to: b}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].from",
      "regions only" },
    { LB "      localityLbSetting:\n"
         "        failover: [{from: a, to: \"*\"}]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to",
      "regions only" },
    { LB "      localityLbSetting:\n"
         "        failover: [{from: a, to: b}]\n"
         "        failoverPriority: [topology.kubernetes.io/zone]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failover",
      "topology key" },
    { LB "      localityLbSetting:\n"
         "        failoverPriority: [topology.istio.io/network]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]",
      "no networks" },
    { LB "      localityLbSetting:\n"
         "        failoverPriority: [version, version]\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[1]",
      "given twice" },
    { LB "      localityLbSetting:\n"
         "        enabled: yes please\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.enabled",
      "true or false" },
    { LB "      localityLbSetting: {weights: 1}\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting.weights",
      "unknown field \"weights\"" },
    { LB "      consistentHash: {useSourceIp: true}\n"
         "      localityLbSetting: {enabled: true}\n",
      "spec.trafficPolicy.loadBalancer.localityLbSetting",
      "with consistentHash is not supported" },
    { LB "      simple: RANDOM\n"
         "      warmupDurationSecs: 10s\n",
      "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
      "needs ROUND_ROBIN or LEAST_REQUEST" },
    { LB "      warmupDurationSecs: 10\n",
      "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
      "must be a duration" },
    { LB "      warmup: {duration: 10s}\n",
      "spec.trafficPolicy.loadBalancer.warmup",
      "unsupported field \"warmup\"" },
};


START_TEST(policy_parse_locality_refused_as_istio)
{
    rd_policy_t      *p;
    rd_policy_err_t   e;

    p = rd_policy_parse("pol", bad_locality[_i].yaml,
                        strlen(bad_locality[_i].yaml), &e);
    ck_assert_msg(p == NULL, "case %d accepted", _i);

    ck_assert_msg(strstr(e.msg, bad_locality[_i].msg) != NULL,
                  "case %d: message \"%s\" lacks \"%s\"", _i, e.msg,
                  bad_locality[_i].msg);
    ck_assert_msg(strcmp(e.field, bad_locality[_i].field) == 0,
                  "case %d: field \"%s\", want \"%s\" (%s)", _i, e.field,
                  bad_locality[_i].field, e.msg);
}
END_TEST


START_TEST(policy_parse_locality_and_warmup_normalize)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        LB "      simple: LEAST_REQUEST\n"
           "      warmupDurationSecs: 1m\n"
           "      localityLbSetting:\n"
           "        failover: [{from: us-east, to: eu-west}]\n"
           "        failoverPriority: [version]\n"
           "        distribute: []\n"
           "    outlierDetection: {consecutive5xxErrors: 1}\n"
           "  subsets:\n"
           "  - name: v1\n"
           "    labels: {version: v1}\n"
           "    trafficPolicy:\n"
           "      loadBalancer:\n"
           "        localityLbSetting:\n"
           "          enabled: false\n"
           "          distribute:\n"
           "          - from: us-east/*\n"
           "            to: {\"us-east/*\": 80, \"eu-west/z1\": 20}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"DestinationRule\",\"name\":\"d\","
        "\"host\":\"orders\",\"trafficPolicy\":{\"loadBalancer\":{"
        "\"simple\":\"LEAST_REQUEST\",\"warmupDurationMs\":60000,"
        "\"localityLbSetting\":{\"enabled\":true,"
        "\"failover\":[{\"from\":\"us-east\",\"to\":\"eu-west\"}],"
        "\"failoverPriority\":[\"version\"]}},"
        "\"outlierDetection\":{\"consecutive5xxErrors\":1}},"
        "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\"},"
        "\"trafficPolicy\":{\"loadBalancer\":{\"localityLbSetting\":{"
        "\"enabled\":false,\"distribute\":[{\"from\":\"us-east/*\","
        "\"to\":{\"us-east/*\":80,\"eu-west/z1\":20}}]}}}}]}");
    json_decref(v);
}
END_TEST


/* tls: the mode always (DISABLE when not given), paths and names as
 * given, insecureSkipVerify only when true, an empty subjectAltNames left
 * out; a subset's tls carried as its own */
START_TEST(policy_parse_tls_normalizes)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: db}\n"
        "spec:\n"
        "  host: db\n"
        "  trafficPolicy:\n"
        "    tls:\n"
        "      mode: MUTUAL\n"
        "      clientCertificate: /etc/certs/client.pem\n"
        "      privateKey: /etc/certs/client.key\n"
        "      caCertificates: /etc/certs/ca.pem\n"
        "      caCrl: /etc/certs/ca.crl\n"
        "      sni: db.example\n"
        "      subjectAltNames: [db.example, \"spiffe://c/ns/a/sa/db\"]\n"
        "      insecureSkipVerify: false\n"
        "  subsets:\n"
        "  - name: v1\n"
        "    labels: {version: v1}\n"
        "    trafficPolicy:\n"
        "      tls: {sni: v1.db, subjectAltNames: []}\n"
        "  - name: v2\n"
        "    labels: {version: v2}\n"
        "    trafficPolicy:\n"
        "      tls: {mode: SIMPLE, insecureSkipVerify: true}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"DestinationRule\",\"name\":\"db\","
        "\"host\":\"db\",\"trafficPolicy\":{\"tls\":{\"mode\":\"MUTUAL\","
        "\"clientCertificate\":\"/etc/certs/client.pem\","
        "\"privateKey\":\"/etc/certs/client.key\","
        "\"caCertificates\":\"/etc/certs/ca.pem\","
        "\"caCrl\":\"/etc/certs/ca.crl\",\"sni\":\"db.example\","
        "\"subjectAltNames\":[\"db.example\",\"spiffe://c/ns/a/sa/db\"]}},"
        "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\"},"
        "\"trafficPolicy\":{\"tls\":{\"mode\":\"DISABLE\","
        "\"sni\":\"v1.db\"}}},"
        "{\"name\":\"v2\",\"labels\":{\"version\":\"v2\"},"
        "\"trafficPolicy\":{\"tls\":{\"mode\":\"SIMPLE\","
        "\"insecureSkipVerify\":true}}}]}");
    json_decref(v);
}
END_TEST


/* tls in a portLevelSettings entry: normalized as the trafficPolicy's,
 * nothing of the trafficPolicy's tls in it (the entry replaces it) */
START_TEST(policy_parse_port_tls_normalizes)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: db}\n"
        "spec:\n"
        "  host: db\n"
        "  trafficPolicy:\n"
        "    tls: {mode: ISTIO_MUTUAL}\n"
        "    portLevelSettings:\n"
        "    - port: {number: 5432}\n"
        "      tls:\n"
        "        mode: SIMPLE\n"
        "        caCertificates: /etc/certs/ca.pem\n"
        "        sni: db.example\n"
        "    - port: {number: 8080}\n"
        "      tls: {}\n"
        "  subsets:\n"
        "  - name: v1\n"
        "    labels: {version: v1}\n"
        "    trafficPolicy:\n"
        "      portLevelSettings:\n"
        "      - port: {number: 5432}\n"
        "        tls: {mode: MUTUAL, clientCertificate: /c.pem,"
        " privateKey: /k.pem}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"DestinationRule\",\"name\":\"db\","
        "\"host\":\"db\",\"trafficPolicy\":{"
        "\"tls\":{\"mode\":\"ISTIO_MUTUAL\"},"
        "\"portLevelSettings\":[{\"port\":5432,\"tls\":{"
        "\"caCertificates\":\"/etc/certs/ca.pem\",\"sni\":\"db.example\","
        "\"mode\":\"SIMPLE\"}},"
        "{\"port\":8080,\"tls\":{\"mode\":\"DISABLE\"}}]},"
        "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\"},"
        "\"trafficPolicy\":{\"portLevelSettings\":[{\"port\":5432,"
        "\"tls\":{\"clientCertificate\":\"/c.pem\","
        "\"privateKey\":\"/k.pem\",\"mode\":\"MUTUAL\"}}]}}]}");
    json_decref(v);
}
END_TEST


START_TEST(policy_parse_virtual_service_normalizes)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "apiVersion: networking.istio.io/v1beta1\n"
        "kind: DestinationRule\n"
        "metadata: {name: orders}\n"
        "spec:\n"
        "  host: orders\n"
        "  trafficPolicy:\n"
        "    loadBalancer: {consistentHash: {httpHeaderName: X-User}}\n"
        "  subsets:\n"
        "  - {name: v1, labels: {version: v1}}\n"
        "  - {name: v2, labels: {version: v2}}\n"
        "---\n"
        "apiVersion: mesh/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: orders}\n"
        "spec:\n"
        "  hosts: [orders]\n"
        "  http:\n"
        "  - name: canary\n"
        "    match:\n"
        "    - headers: {x-canary: {exact: \"1\"}}\n"
        "      uri: {regex: \"/v[0-9]+/.*\"}\n"
        "    - uri: {prefix: /beta/}\n"
        "    route:\n"
        "    - destination: {host: orders, subset: v2}\n"
        "  - route:\n"
        "    - destination: {host: orders, subset: v1}\n"
        "      weight: 90\n"
        "    - destination: {host: orders, subset: v2}\n"
        "      weight: 10\n"
        "    retries:\n"
        "      attempts: 3\n"
        "      perTryTimeout: 2s\n"
        "      retryOn: 5xx, gateway-error,connect-failure,reset\n"
        "    timeout: 10s\n", &n);

    ck_assert_uint_eq(n, 2);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"DestinationRule\",\"name\":\"orders\","
        "\"host\":\"orders\",\"trafficPolicy\":{\"loadBalancer\":"
        "{\"consistentHash\":{\"httpHeaderName\":\"x-user\"}}},"
        "\"subsets\":[{\"name\":\"v1\",\"labels\":{\"version\":\"v1\"}},"
        "{\"name\":\"v2\",\"labels\":{\"version\":\"v2\"}}]}");
    expect_json(json_array_get(v, 1),
        "{\"policy\":\"pol\",\"kind\":\"VirtualService\",\"name\":\"orders\","
        "\"hosts\":[\"orders\"],\"http\":["
        "{\"name\":\"canary\",\"match\":["
        "{\"headers\":{\"x-canary\":{\"exact\":\"1\"}},"
        "\"uri\":{\"regex\":\"/v[0-9]+/.*\"}},"
        "{\"uri\":{\"prefix\":\"/beta/\"}}],"
        "\"route\":[{\"destination\":{\"host\":\"orders\",\"subset\":\"v2\"},"
        "\"weight\":100}]},"
        "{\"match\":[],\"route\":["
        "{\"destination\":{\"host\":\"orders\",\"subset\":\"v1\"},"
        "\"weight\":90},"
        "{\"destination\":{\"host\":\"orders\",\"subset\":\"v2\"},"
        "\"weight\":10}],"
        "\"retries\":{\"attempts\":3,\"perTryTimeoutMs\":2000,"
        "\"retryOn\":[\"5xx\",\"gateway-error\",\"connect-failure\","
        "\"reset\"]},\"timeoutMs\":10000}]}");
    json_decref(v);
}
END_TEST


START_TEST(policy_parse_match_case_and_source_labels_normalize)
{
    size_t   n;
    json_t  *v;

    v = normalized(VS
        "  - match:\n"
        "    - uri: {prefix: /Api/}\n"
        "      ignoreUriCase: true\n"
        "    - uri: {exact: /x}\n"
        "      ignoreUriCase: false\n"
        "    - sourceLabels: {app: web, version: \"2\"}\n"
        "      headers: {x-a: {exact: b}}\n"
        "    - sourceLabels: {env: prod}\n"
        RT_ONLY, &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"VirtualService\",\"name\":\"v\","
        "\"hosts\":[\"orders\"],\"http\":[{\"match\":["
        "{\"uri\":{\"prefix\":\"/Api/\"},\"ignoreUriCase\":true},"
        "{\"uri\":{\"exact\":\"/x\"}},"
        "{\"sourceLabels\":{\"app\":\"web\",\"version\":\"2\"},"
        "\"headers\":{\"x-a\":{\"exact\":\"b\"}}},"
        "{\"sourceLabels\":{\"env\":\"prod\"}}],"
        "\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}]}]}");
    json_decref(v);
}
END_TEST


START_TEST(policy_parse_request_shaping_normalizes)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: orders}\n"
        "spec:\n"
        "  hosts: [orders]\n"
        "  http:\n"
        "  - match: [{uri: {prefix: /v1/}}]\n"
        "    redirect: {uri: /api/, authority: new.example:8443}\n"
        "  - redirect: {scheme: https, port: 443, redirectCode: 308}\n"
        "    headers: {response: {set: {X-Why: moved}}}\n"
        "  - directResponse: {status: 503, body: {string: \"down\\n\"}}\n"
        "  - directResponse:\n"
        "      status: 200\n"
        "      body: {bytes: \"aGVsbG8=\"}\n"
        "  - directResponse: {status: 204}\n"
        "  - fault:\n"
        "      delay: {fixedDelay: 1.5s, percentage: {value: 0.1}}\n"
        "      abort: {httpStatus: 503}\n"
        "    rewrite: {uri: /v2/, authority: orders-v2}\n"
        "    headers:\n"
        "      request:\n"
        "        set: {X-Env: prod, x-pct: \"100%%\"}\n"
        "        add: {x-tag: \"a\\tb\", x-empty: \"\"}\n"
        "        remove: [X-Debug, cookie]\n"
        "      response:\n"
        "        remove: [server]\n"
        "        set: {}\n"
        "    route:\n"
        "    - destination: {host: orders}\n"
        "      weight: 60\n"
        "      headers: {response: {add: {x-by: a}}, request: {}}\n"
        "    - destination: {host: orders}\n"
        "      weight: 40\n"
        "  - fault:\n"
        "      delay: {fixedDelay: 5s, percent: 5}\n"
        "      abort: {httpStatus: 404, percentage: {value: 0.00005}}\n"
        "    headers: {}\n"
        "    route:\n"
        "    - destination: {host: orders}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"VirtualService\",\"name\":\"orders\","
        "\"hosts\":[\"orders\"],\"http\":["
        "{\"match\":[{\"uri\":{\"prefix\":\"/v1/\"}}],"
        "\"redirect\":{\"uri\":\"/api/\",\"authority\":\"new.example:8443\","
        "\"redirectCode\":301}},"
        "{\"match\":[],\"redirect\":{\"scheme\":\"https\",\"port\":443,"
        "\"redirectCode\":308},"
        "\"headers\":{\"response\":{\"set\":{\"x-why\":\"moved\"}}}},"
        "{\"match\":[],\"directResponse\":{\"status\":503,"
        "\"body\":\"down\\n\"}},"
        "{\"match\":[],\"directResponse\":{\"status\":200,"
        "\"body\":\"hello\"}},"
        "{\"match\":[],\"directResponse\":{\"status\":204}},"
        "{\"match\":[],"
        "\"fault\":{\"delay\":{\"fixedDelayMs\":1500,\"ppm\":1000},"
        "\"abort\":{\"httpStatus\":503,\"ppm\":1000000}},"
        "\"rewrite\":{\"uri\":\"/v2/\",\"authority\":\"orders-v2\"},"
        "\"headers\":{\"request\":{"
        "\"set\":{\"x-env\":\"prod\",\"x-pct\":\"100%\"},"
        "\"add\":{\"x-tag\":\"a\\tb\",\"x-empty\":\"\"},"
        "\"remove\":[\"x-debug\",\"cookie\"]},"
        "\"response\":{\"remove\":[\"server\"]}},"
        "\"route\":[{\"destination\":{\"host\":\"orders\"},\"weight\":60,"
        "\"headers\":{\"response\":{\"add\":{\"x-by\":\"a\"}}}},"
        "{\"destination\":{\"host\":\"orders\"},\"weight\":40}]},"
        "{\"match\":[],"
        "\"fault\":{\"delay\":{\"fixedDelayMs\":5000,\"ppm\":50000},"
        "\"abort\":{\"httpStatus\":404,\"ppm\":1}},"
        "\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}]}]}");
    json_decref(v);
}
END_TEST


/* corsPolicy as Istio defines it: allowOrigin (deprecated) as exact
 * StringMatches, maxAge in seconds, lists in their order and case, empty
 * ones left out, UNSPECIFIED dropped */
START_TEST(policy_parse_cors_normalizes)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: orders}\n"
        "spec:\n"
        "  hosts: [orders]\n"
        "  http:\n"
        "  - corsPolicy:\n"
        "      allowOrigins:\n"
        "      - exact: https://a.example\n"
        "      - prefix: https://dev.\n"
        "      - regex: \"https://[a-z]+\\\\.example\\\\.org\"\n"
        "      allowMethods: [POST, GET]\n"
        "      allowHeaders: [X-Foo-Bar, content-type]\n"
        "      exposeHeaders: [X-Trace]\n"
        "      maxAge: 24h\n"
        "      allowCredentials: true\n"
        "      unmatchedPreflights: IGNORE\n"
        "    route:\n"
        "    - destination: {host: orders}\n"
        "  - corsPolicy:\n"
        "      allowOrigin: [example.com, \"*\"]\n"
        "      allowHeaders: []\n"
        "      maxAge: 90s\n"
        "      allowCredentials: false\n"
        "      unmatchedPreflights: UNSPECIFIED\n"
        "    directResponse: {status: 204}\n"
        "  - corsPolicy: {}\n"
        "    redirect: {uri: /x}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"VirtualService\",\"name\":\"orders\","
        "\"hosts\":[\"orders\"],\"http\":["
        "{\"match\":[],"
        "\"corsPolicy\":{\"allowOrigins\":[{\"exact\":\"https://a.example\"},"
        "{\"prefix\":\"https://dev.\"},"
        "{\"regex\":\"https://[a-z]+\\\\.example\\\\.org\"}],"
        "\"allowMethods\":[\"POST\",\"GET\"],"
        "\"allowHeaders\":[\"X-Foo-Bar\",\"content-type\"],"
        "\"exposeHeaders\":[\"X-Trace\"],\"maxAgeS\":86400,"
        "\"allowCredentials\":true,\"unmatchedPreflights\":\"IGNORE\"},"
        "\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}]},"
        "{\"match\":[],\"directResponse\":{\"status\":204},"
        "\"corsPolicy\":{\"allowOrigins\":[{\"exact\":\"example.com\"},"
        "{\"exact\":\"*\"}],\"maxAgeS\":90,\"allowCredentials\":false}},"
        "{\"match\":[],\"redirect\":{\"uri\":\"/x\",\"redirectCode\":301},"
        "\"corsPolicy\":{}}]}");
    json_decref(v);
}
END_TEST


/* mirror with its percentage (three spellings) and mirrors arrive as
 * mirrors, with ppm always */
START_TEST(policy_parse_mirrors_normalize)
{
    size_t   n;
    json_t  *v;

    v = normalized(
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: orders}\n"
        "spec:\n"
        "  hosts: [orders]\n"
        "  http:\n"
        "  - route:\n"
        "    - destination: {host: orders}\n"
        "    mirror: {host: audit}\n"
        "  - route:\n"
        "    - destination: {host: orders}\n"
        "    mirror: {host: audit}\n"
        "    mirrorPercentage: {value: 0.5}\n"
        "  - route:\n"
        "    - destination: {host: orders}\n"
        "    mirror: {host: audit}\n"
        "    mirror_percent: 7\n"
        "  - route:\n"
        "    - destination: {host: orders}\n"
        "    mirrors:\n"
        "    - destination: {host: audit}\n"
        "      percentage: {value: 25}\n"
        "    - destination: {host: shadow}\n", &n);

    ck_assert_uint_eq(n, 1);
    expect_json(json_array_get(v, 0),
        "{\"policy\":\"pol\",\"kind\":\"VirtualService\",\"name\":\"orders\","
        "\"hosts\":[\"orders\"],\"http\":["
        "{\"match\":[],\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}],\"mirrors\":[{\"destination\":{\"host\":\"audit\"},"
        "\"ppm\":1000000}]},"
        "{\"match\":[],\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}],\"mirrors\":[{\"destination\":{\"host\":\"audit\"},"
        "\"ppm\":5000}]},"
        "{\"match\":[],\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}],\"mirrors\":[{\"destination\":{\"host\":\"audit\"},"
        "\"ppm\":70000}]},"
        "{\"match\":[],\"route\":[{\"destination\":{\"host\":\"orders\"},"
        "\"weight\":100}],\"mirrors\":["
        "{\"destination\":{\"host\":\"audit\"},\"ppm\":250000},"
        "{\"destination\":{\"host\":\"shadow\"},\"ppm\":1000000}]}]}");
    json_decref(v);
}
END_TEST


/* Istio's retryOn: refused-stream is nginx's reset; attempts alone get
 * Istio's default conditions, those nginx can honour */
START_TEST(policy_parse_retries_follow_istio)
{
    size_t   n;
    json_t  *v, *http;

    v = normalized(VS
        "  - match: [{uri: {prefix: /a}}]\n"
        "    route:\n    - destination: {host: orders}\n"
        "    retries: {attempts: 3}\n"
        "  - match: [{uri: {prefix: /b}}]\n"
        "    route:\n    - destination: {host: orders}\n"
        "    retries: {attempts: 0}\n"
        "  - match: [{uri: {prefix: /c}}]\n"
        "    route:\n    - destination: {host: orders}\n"
        "    retries: {attempts: 1, retryOn: "
        "\"refused-stream,5xx,reset\"}\n"
        "  - route:\n    - destination: {host: orders}\n"
        "    retries: {attempts: 1, retryOn: refused-stream}\n", &n);

    http = json_object_get(json_array_get(v, 0), "http");
    expect_json(json_object_get(json_array_get(http, 0), "retries"),
                "{\"attempts\":3,\"retryOn\":[\"connect-failure\","
                "\"reset\"]}");
    expect_json(json_object_get(json_array_get(http, 1), "retries"),
                "{\"attempts\":0}");
    expect_json(json_object_get(json_array_get(http, 2), "retries"),
                "{\"attempts\":1,\"retryOn\":[\"reset\",\"5xx\"]}");
    expect_json(json_object_get(json_array_get(http, 3), "retries"),
                "{\"attempts\":1,\"retryOn\":[\"reset\"]}");
    json_decref(v);
}
END_TEST


START_TEST(policy_parse_empty_documents_are_skipped)
{
    size_t   n;
    json_t  *v;

    v = normalized("---\n" DR "---\n---\n", &n);
    ck_assert_uint_eq(n, 1);
    json_decref(v);
}
END_TEST


/* what kubectl get -o yaml adds is ignored; gateways naming the mesh are
 * taken */
START_TEST(policy_parse_takes_kubectl_output_and_mesh_gateways)
{
    size_t   n;
    json_t  *v;

    v = normalized("apiVersion: networking.istio.io/v1\n"
                   "kind: VirtualService\n"
                   "metadata:\n"
                   "  name: reviews\n"
                   "  namespace: default\n"
                   "  uid: 4b7f1c2e-0000-4000-8000-000000000001\n"
                   "  resourceVersion: \"123456\"\n"
                   "  generation: 3\n"
                   "  creationTimestamp: \"2026-12-06T10:00:00Z\"\n"
                   "  annotations:\n"
                   "    kubectl.kubernetes.io/last-applied-configuration: "
                   "\"{}\"\n"
                   "  managedFields:\n"
                   "  - manager: kubectl\n"
                   "    operation: Update\n"
                   "    fieldsV1: {f:spec: {}}\n"
                   "spec:\n"
                   "  hosts: [orders]\n"
                   "  gateways: [mesh, bookinfo-gateway]\n"
                   "  http:\n"
                   "  - route:\n"
                   "    - destination: {host: orders}\n"
                   "status:\n"
                   "  observedGeneration: 3\n"
                   "  conditions: [{type: Reconciled, status: \"True\"}]\n",
                   &n);
    ck_assert_uint_eq(n, 1);
    json_decref(v);
}
END_TEST


static rd_policy_t *
parse_ok(const char *name, const char *yaml)
{
    rd_policy_t      *p;
    rd_policy_err_t   e;

    p = rd_policy_parse(name, yaml, strlen(yaml), &e);
    ck_assert_msg(p != NULL, "%s", e.msg);
    return p;
}


#define DR_SUBSETS                                                          \
    "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: d}\n"     \
    "spec:\n  host: orders\n  subsets:\n  - {name: v2, labels: {v: \"2\"}}\n"

#define VS_V2                                                               \
    "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"      \
    "spec:\n  hosts: [orders]\n  http:\n"                                   \
    "  - route:\n    - destination: {host: orders, subset: v2}\n"


START_TEST(policy_check_subsets_and_hosts_across_policies)
{
    rd_policy_t      *dr, *vs, *dr2, *others[2];
    rd_policy_err_t   e;

    dr = parse_ok("a", DR_SUBSETS);
    vs = parse_ok("b", VS_V2);

    /* alone, the route names nothing */
    ck_assert_int_ne(rd_policy_check(vs, NULL, 0, &e), 0);
    ck_assert_str_eq(e.field, "spec.http[0].route[0].destination.subset");
    ck_assert_int_eq(e.line, 8);
    ck_assert_int_eq(e.column, 43);

    /* with the stored DestinationRule, it does */
    others[0] = dr;
    ck_assert_int_eq(rd_policy_check(vs, others, 1, &e), 0);

    /* a second DestinationRule for the host, in another policy */
    dr2 = parse_ok("c", DR_SUBSETS);
    ck_assert_int_ne(rd_policy_check(dr2, others, 1, &e), 0);
    ck_assert_str_eq(e.field, "spec.host");
    ck_assert_ptr_nonnull(strstr(e.msg, "policy \"a\""));

    /* but it may replace the one of its own name */
    snprintf(dr2->name, sizeof(dr2->name), "a");
    ck_assert_int_eq(rd_policy_check(dr2, others, 1, &e), 0);

    /* replacing "a" by a policy without the subset breaks the route of
     * "b": b is then refused against what is stored */
    others[0] = vs;
    ck_assert_int_eq(rd_policy_check(dr, others, 1, &e), 0);

    rd_policy_free(dr);
    rd_policy_free(dr2);
    rd_policy_free(vs);
}
END_TEST


/* a route's subset is the one of the rule that applies to its host: a
 * wildcard rule's, unless a more specific rule takes the host */
START_TEST(policy_check_subset_of_wildcard_rule)
{
    rd_policy_t      *wild, *exact, *vs, *vs9, *others[2];
    rd_policy_err_t   e;

    wild = parse_ok("w",
        "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: w}\n"
        "spec:\n  host: \"*.shop\"\n  subsets:\n"
        "  - {name: v2, labels: {v: \"2\"}}\n");
    exact = parse_ok("x",
        "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: x}\n"
        "spec:\n  host: orders.shop\n  trafficPolicy:\n"
        "    loadBalancer: {simple: RANDOM}\n");
    vs = parse_ok("v",
        "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
        "spec:\n  hosts: [orders.shop]\n  http:\n"
        "  - route:\n    - destination: {host: orders.shop, subset: v2}\n");
    vs9 = parse_ok("v",
        "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
        "spec:\n  hosts: [orders.shop]\n  http:\n"
        "  - route:\n    - destination: {host: orders.shop, subset: v9}\n");

    others[0] = wild;
    ck_assert_msg(rd_policy_check(vs, others, 1, &e) == 0, "%s", e.msg);

    ck_assert_int_ne(rd_policy_check(vs9, others, 1, &e), 0);
    ck_assert_ptr_nonnull(strstr(e.msg, "DestinationRule (host \"*.shop\")"));

    /* the exact rule takes the host, and it has no subsets */
    others[1] = exact;
    ck_assert_int_ne(rd_policy_check(vs, others, 2, &e), 0);
    ck_assert_str_eq(e.field, "spec.http[0].route[0].destination.subset");
    ck_assert_ptr_nonnull(strstr(e.msg,
                                 "DestinationRule (host \"orders.shop\")"));

    rd_policy_free(wild);
    rd_policy_free(exact);
    rd_policy_free(vs);
    rd_policy_free(vs9);
}
END_TEST


/* a Gateway and its VirtualService, as bookinfo's gateway file has them,
 * normalized; the gateways' names; hosts of a VirtualService at gateways
 * alone are the requests' Host, lowercase */
START_TEST(policy_gateway_normalized)
{
    size_t   n;
    json_t  *v, *d, *sv, *g;
    char    *s;

    v = normalized("apiVersion: networking.istio.io/v1alpha3\n"
                   "kind: Gateway\n"
                   "metadata: {name: bookinfo-gateway, namespace: shop}\n"
                   "spec:\n"
                   "  selector: {istio: ingressgateway}\n"
                   "  servers:\n"
                   "  - port: {number: 80, name: http, protocol: http}\n"
                   "    hosts: [\"*\", \"./Shop.Example\", \"*/a.b\"]\n"
                   "    tls: {httpsRedirect: true}\n"
                   "  - port: {number: 443, name: https, protocol: HTTPS}\n"
                   "    hosts: [\"prod/*.example\"]\n"
                   "    tls: {mode: SIMPLE, credentialName: shop-cert}\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1alpha3\n"
                   "kind: VirtualService\n"
                   "metadata: {name: bookinfo, namespace: shop}\n"
                   "spec:\n"
                   "  hosts: [\"*\", Bookinfo.COM]\n"
                   "  gateways: [bookinfo-gateway, prod/edge]\n"
                   "  http:\n"
                   "  - match: [{uri: {exact: /productpage}}]\n"
                   "    route:\n"
                   "    - destination:\n"
                   "        host: productpage\n"
                   "        port: {number: 9080}\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1alpha3\n"
                   "kind: VirtualService\n"
                   "metadata: {name: both}\n"
                   "spec:\n"
                   "  hosts: [\"*.my-co.org\"]\n"
                   "  gateways: [mesh, edge]\n"
                   "  http: [{route: [{destination: {host: my-svc}}]}]\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1alpha3\n"
                   "kind: VirtualService\n"
                   "metadata: {name: mesh-only}\n"
                   "spec:\n"
                   "  hosts: [reviews]\n"
                   "  gateways: [mesh]\n"
                   "  http: [{route: [{destination: {host: reviews}}]}]\n",
                   &n);
    ck_assert_uint_eq(n, 4);

    d = json_array_get(v, 0);
    ck_assert_str_eq(json_string_value(json_object_get(d, "kind")),
                     "Gateway");
    ck_assert_str_eq(json_string_value(json_object_get(d, "gateway")),
                     "shop/bookinfo-gateway");
    s = json_dumps(json_object_get(d, "servers"), JSON_COMPACT);
    ck_assert_str_eq(s, "[{\"port\":80,\"protocol\":\"HTTP\","
                     "\"hosts\":[\"*\",\"shop/shop.example\",\"a.b\"],"
                     "\"httpsRedirect\":true},"
                     "{\"port\":443,\"protocol\":\"HTTPS\","
                     "\"hosts\":[\"prod/*.example\"]}]");
    free(s);
    ck_assert_str_eq(json_string_value(json_object_get(
        json_object_get(d, "selector"), "istio")), "ingressgateway");

    d = json_array_get(v, 1);
    g = json_object_get(d, "gateways");
    ck_assert_uint_eq(json_array_size(g), 2);
    ck_assert_str_eq(json_string_value(json_array_get(g, 0)),
                     "shop/bookinfo-gateway");
    ck_assert_str_eq(json_string_value(json_array_get(g, 1)), "prod/edge");
    ck_assert_str_eq(json_string_value(json_object_get(d, "namespace")),
                     "shop");
    ck_assert_str_eq(json_string_value(json_array_get(
        json_object_get(d, "hosts"), 1)), "bookinfo.com");
    sv = json_object_get(json_array_get(json_object_get(json_array_get(
             json_object_get(d, "http"), 0), "route"), 0), "destination");
    ck_assert_int_eq(json_integer_value(json_object_get(sv, "port")), 9080);

    d = json_array_get(v, 2);
    g = json_object_get(d, "gateways");
    ck_assert_str_eq(json_string_value(json_array_get(g, 0)), "mesh");
    ck_assert_str_eq(json_string_value(json_array_get(g, 1)),
                     "default/edge");
    ck_assert_str_eq(json_string_value(json_array_get(
        json_object_get(d, "hosts"), 0)), "*.my-co.org");

    /* the mesh alone: as without the field */
    d = json_array_get(v, 3);
    ck_assert_ptr_null(json_object_get(d, "gateways"));
    ck_assert_ptr_null(json_object_get(d, "namespace"));

    json_decref(v);
}
END_TEST


/* servers for the stream module: TCP and TLS (PASSTHROUGH) carry
 * "stream" in place of "protocol"; servers of one kind share a port */
START_TEST(policy_gateway_stream_servers_normalized)
{
    size_t   n;
    json_t  *v;

    v = normalized("apiVersion: networking.istio.io/v1\n"
                   "kind: Gateway\n"
                   "metadata: {name: edge, namespace: shop}\n"
                   "spec:\n"
                   "  servers:\n"
                   "  - port: {number: 31400, name: tcp, protocol: tcp}\n"
                   "    hosts: [\"*\"]\n"
                   "  - port: {number: 443, name: tls, protocol: TLS}\n"
                   "    hosts: [\"./Login.Example\", \"*/*.b.example\"]\n"
                   "    tls: {mode: PASSTHROUGH}\n"
                   "  - port: {number: 443, protocol: TLS}\n"
                   "    hosts: [\"prod/db.example\"]\n"
                   "    tls: {mode: PASSTHROUGH}\n"
                   "  - port: {number: 80, protocol: HTTP}\n"
                   "    hosts: [a.example]\n"
                   "  - port: {number: 80, protocol: HTTP}\n"
                   "    hosts: [b.example]\n"
                   "  - port: {number: 8443, protocol: HTTPS}\n"
                   "    hosts: [\"*\"]\n"
                   "    tls: {mode: SIMPLE}\n"
                   "  - port: {number: 31401, protocol: TCP}\n"
                   "    hosts: [\"*\"]\n", &n);
    ck_assert_uint_eq(n, 1);

    expect_json(json_object_get(json_array_get(v, 0), "servers"),
        "[{\"port\":31400,\"hosts\":[\"*\"],\"stream\":\"TCP\"},"
        "{\"port\":443,\"hosts\":[\"shop/login.example\",\"*.b.example\"],"
        "\"stream\":\"TLS\"},"
        "{\"port\":443,\"hosts\":[\"prod/db.example\"],\"stream\":\"TLS\"},"
        "{\"port\":80,\"protocol\":\"HTTP\",\"hosts\":[\"a.example\"]},"
        "{\"port\":80,\"protocol\":\"HTTP\",\"hosts\":[\"b.example\"]},"
        "{\"port\":8443,\"protocol\":\"HTTPS\",\"hosts\":[\"*\"]},"
        "{\"port\":31401,\"hosts\":[\"*\"],\"stream\":\"TCP\"}]");

    json_decref(v);
}
END_TEST


/* Istio's tcp-echo sample (samples/tcp-echo/tcp-echo-all-v1.yaml), as
 * it is: a TCP server and tcp routes at a gateway alone */
START_TEST(policy_istio_tcp_echo_gateway_accepted)
{
    size_t   n;
    json_t  *v, *d;

    v = normalized("apiVersion: networking.istio.io/v1\n"
                   "kind: Gateway\n"
                   "metadata:\n"
                   "  name: tcp-echo-gateway\n"
                   "spec:\n"
                   "  selector:\n"
                   "    istio: ingressgateway\n"
                   "  servers:\n"
                   "  - port:\n"
                   "      number: 31400\n"
                   "      name: tcp\n"
                   "      protocol: TCP\n"
                   "    hosts:\n"
                   "    - \"*\"\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1\n"
                   "kind: DestinationRule\n"
                   "metadata:\n"
                   "  name: tcp-echo-destination\n"
                   "spec:\n"
                   "  host: tcp-echo\n"
                   "  subsets:\n"
                   "  - name: v1\n"
                   "    labels: {version: v1}\n"
                   "  - name: v2\n"
                   "    labels: {version: v2}\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1\n"
                   "kind: VirtualService\n"
                   "metadata:\n"
                   "  name: tcp-echo\n"
                   "spec:\n"
                   "  hosts:\n"
                   "  - \"*\"\n"
                   "  gateways:\n"
                   "  - tcp-echo-gateway\n"
                   "  tcp:\n"
                   "  - match:\n"
                   "    - port: 31400\n"
                   "    route:\n"
                   "    - destination:\n"
                   "        host: tcp-echo\n"
                   "        port:\n"
                   "          number: 9000\n"
                   "        subset: v1\n", &n);
    ck_assert_uint_eq(n, 3);

    d = json_array_get(v, 0);
    expect_json(json_object_get(d, "servers"),
                "[{\"port\":31400,\"hosts\":[\"*\"],\"stream\":\"TCP\"}]");

    d = json_array_get(v, 2);
    json_object_del(d, "policy");
    json_object_del(d, "kind");
    json_object_del(d, "name");
    expect_json(d, "{\"hosts\":[\"*\"],\"http\":[],"
                "\"tcp\":[{\"match\":[{\"port\":31400}],"
                "\"route\":[{\"destination\":{\"host\":\"tcp-echo\","
                "\"port\":9000,\"subset\":\"v1\"},\"weight\":100}]}],"
                "\"gateways\":[\"default/tcp-echo-gateway\"],"
                "\"namespace\":\"default\"}");

    json_decref(v);
}
END_TEST


/* tls routes: the VirtualService reference's example (bookinfo-sni) as
 * it is; sniHosts lowercase, "port" only when given, subsets referred
 * to as http's are; for the mesh too */
START_TEST(policy_tls_routes_normalized)
{
    size_t   n;
    json_t  *v, *d;

    rd_policy_set_suffixes("*.svc.cluster.local");

    v = normalized("apiVersion: networking.istio.io/v1alpha3\n"
                   "kind: VirtualService\n"
                   "metadata:\n"
                   "  name: bookinfo-sni\n"
                   "spec:\n"
                   "  hosts:\n"
                   "  - \"*.bookinfo.com\"\n"
                   "  gateways:\n"
                   "  - mygateway\n"
                   "  tls:\n"
                   "  - match:\n"
                   "    - port: 443\n"
                   "      sniHosts:\n"
                   "      - login.bookinfo.com\n"
                   "    route:\n"
                   "    - destination:\n"
                   "        host: login.prod.svc.cluster.local\n"
                   "  - match:\n"
                   "    - port: 443\n"
                   "      sniHosts:\n"
                   "      - reviews.bookinfo.com\n"
                   "    route:\n"
                   "    - destination:\n"
                   "        host: reviews.prod.svc.cluster.local\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1\n"
                   "kind: DestinationRule\n"
                   "metadata: {name: db}\n"
                   "spec:\n"
                   "  host: db\n"
                   "  subsets:\n"
                   "  - {name: v1, labels: {version: v1}}\n"
                   "  - {name: v2, labels: {version: v2}}\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1\n"
                   "kind: VirtualService\n"
                   "metadata: {name: db}\n"
                   "spec:\n"
                   "  hosts: [db.prod.svc.cluster.local, \"*.Corp.Example\"]\n"
                   "  gateways: [mesh, edge]\n"
                   "  tls:\n"
                   "  - match:\n"
                   "    - sniHosts: [DB.prod.svc.cluster.local]\n"
                   "    - sniHosts: [\"*.eu.corp.example\", a.corp.example]\n"
                   "      port: 5432\n"
                   "    route:\n"
                   "    - destination: {host: db, subset: v1}\n"
                   "      weight: 90\n"
                   "    - destination: {host: db, subset: v2, port: "
                   "{number: 5432}}\n"
                   "      weight: 10\n"
                   "  tcp:\n"
                   "  - route:\n"
                   "    - destination: {host: db}\n", &n);
    ck_assert_uint_eq(n, 3);

    d = json_array_get(v, 0);
    json_object_del(d, "policy");
    json_object_del(d, "kind");
    json_object_del(d, "name");
    expect_json(d, "{\"hosts\":[\"*.bookinfo.com\"],\"http\":[],"
                "\"tls\":[{\"match\":[{\"port\":443,"
                "\"sniHosts\":[\"login.bookinfo.com\"]}],"
                "\"route\":[{\"destination\":{\"host\":\"login\"},"
                "\"weight\":100}]},"
                "{\"match\":[{\"port\":443,"
                "\"sniHosts\":[\"reviews.bookinfo.com\"]}],"
                "\"route\":[{\"destination\":{\"host\":\"reviews\"},"
                "\"weight\":100}]}],"
                "\"gateways\":[\"default/mygateway\"],"
                "\"namespace\":\"default\"}");

    d = json_array_get(v, 2);
    json_object_del(d, "policy");
    json_object_del(d, "kind");
    json_object_del(d, "name");
    expect_json(d, "{\"hosts\":[\"db\",\"*.Corp.Example\"],\"http\":[],"
                "\"tcp\":[{\"match\":[],\"route\":[{\"destination\":"
                "{\"host\":\"db\"},\"weight\":100}]}],"
                "\"tls\":[{\"match\":[{\"sniHosts\":"
                "[\"db.prod.svc.cluster.local\"]},"
                "{\"sniHosts\":[\"*.eu.corp.example\",\"a.corp.example\"],"
                "\"port\":5432}],"
                "\"route\":[{\"destination\":{\"host\":\"db\","
                "\"subset\":\"v1\"},\"weight\":90},"
                "{\"destination\":{\"host\":\"db\",\"port\":5432,"
                "\"subset\":\"v2\"},\"weight\":10}]}],"
                "\"gateways\":[\"mesh\",\"default/edge\"],"
                "\"namespace\":\"default\"}");

    json_decref(v);
    rd_policy_set_suffixes(NULL);
}
END_TEST


/* hosts: DNS names that domain_suffixes turn into service names */
START_TEST(policy_hosts_fqdn_map_to_services)
{
    size_t            n;
    json_t           *v, *d;
    rd_policy_t      *p;
    rd_policy_err_t   e;
    const char       *y;

    rd_policy_set_suffixes("*.svc.cluster.local,corp.example");

    v = normalized("apiVersion: networking.istio.io/v1\n"
                   "kind: DestinationRule\n"
                   "metadata: {name: r}\n"
                   "spec: {host: reviews.prod.svc.cluster.local}\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1\n"
                   "kind: VirtualService\n"
                   "metadata: {name: r}\n"
                   "spec:\n"
                   "  hosts: [reviews.default.svc.Cluster.Local]\n"
                   "  http: [{match: [{headers: {X-User: {exact: b}}}],\n"
                   "          route: [{destination: {host: reviews}}]}]\n"
                   "---\n"
                   "apiVersion: networking.istio.io/v1\n"
                   "kind: DestinationRule\n"
                   "metadata: {name: s}\n"
                   "spec: {host: ratings.corp.example}\n", &n);
    ck_assert_uint_eq(n, 3);
    d = json_array_get(v, 0);
    ck_assert_str_eq(json_string_value(json_object_get(d, "host")),
                     "reviews");
    d = json_array_get(v, 1);
    ck_assert_str_eq(json_string_value(
        json_array_get(json_object_get(d, "hosts"), 0)), "reviews");
    /* a header name in any case, kept lowercase */
    ck_assert_ptr_nonnull(json_object_get(json_object_get(json_array_get(
        json_object_get(json_array_get(json_object_get(d, "http"), 0),
                        "match"), 0), "headers"), "x-user"));
    d = json_array_get(v, 2);
    ck_assert_str_eq(json_string_value(json_object_get(d, "host")),
                     "ratings");
    json_decref(v);

    /* a wildcard host stays as written: the services it matches */
    v = normalized("apiVersion: networking.istio.io/v1\n"
                "kind: DestinationRule\n"
                "metadata: {name: r}\n"
                "spec: {host: \"*.example.com\"}\n", &n);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(v, 0),
                                                       "host")),
                     "*.example.com");
    json_decref(v);

    y = "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: r}\n"
        "spec: {host: \"a*.example.com\"}\n";
    p = rd_policy_parse("pol", y, strlen(y), &e);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(e.msg, "is not a valid host"));
    ck_assert_str_eq(e.field, "spec.host");

    /* without the suffixes, an FQDN is a service name of its own */
    rd_policy_set_suffixes(NULL);
    y = "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: r}\n"
        "spec: {host: reviews.prod.svc.cluster.local}\n";
    v = normalized(y, &n);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(v, 0),
                                                       "host")),
                     "reviews.prod.svc.cluster.local");
    json_decref(v);
}
END_TEST


/* objects: a stream cut into documents whose errors tell the stream's
 * lines, identities and the policy names they make */
START_TEST(policy_objects_split_and_name)
{
    size_t             n;
    const char        *s;
    rd_policy_t       *p;
    rd_policy_obj_t    o;
    rd_policy_err_t    e;
    rd_policy_part_t  *v;
    char               name[RD_NAME_MAX + 1], err[RD_ERR_LEN];

    s = "# a comment\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: r, namespace: shop}\n"
        "spec: {host: r}\n"
        "---\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: VirtualService\n"
        "metadata: {name: r}\n"
        "spec:\n"
        "  hosts: [r]\n"
        "  http: [{route: [{destination: {host: r}, weight: 7}]}]\n";

    ck_assert_int_eq(rd_policy_split(s, strlen(s), &v, &n, &e), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(v[0].start, 0);
    ck_assert_int_eq(v[0].empty, 0);
    ck_assert_int_eq(v[1].empty, 1);
    ck_assert_int_eq(v[1].line, 5);
    ck_assert_int_eq(v[2].line, 6);
    ck_assert_int_eq(v[2].empty, 0);
    ck_assert_int_eq(v[2].document, 2);
    ck_assert_uint_eq(v[2].end, strlen(s));

    p = rd_policy_parse_object(s, &v[0], &e);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->name, "destinationrule.shop.r");
    ck_assert_ptr_nonnull(strstr(p->snap,
                                 "\"policy\":\"destinationrule.shop.r\""));
    rd_policy_free(p);

    /* the weight of a single route must be 100: line 13 of the stream */
    p = rd_policy_parse_object(s, &v[2], &e);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(e.line, 13);
    ck_assert_int_eq(e.document, 2);

    ck_assert_int_eq(rd_policy_identity(s, &v[2], &o, &e), 0);
    ck_assert_int_eq(o.kind, RD_POLICY_VS);
    ck_assert_str_eq(o.ns, "default");
    ck_assert_str_eq(o.name, "r");
    free(v);

    ck_assert_int_eq(rd_policy_obj_name(RD_POLICY_VS, "a", "b.c", name, err),
                     0);
    ck_assert_str_eq(name, "virtualservice.a.b.c");
    ck_assert_int_eq(rd_policy_obj_from_name(name, &o), 0);
    ck_assert_str_eq(o.ns, "a");
    ck_assert_str_eq(o.name, "b.c");
    ck_assert_int_eq(rd_policy_obj_from_name("orders", &o), -1);
    ck_assert_int_eq(rd_policy_obj_name(RD_POLICY_DR, "a.b", "c", name, err),
                     -1);
    ck_assert_int_eq(rd_policy_kind_parse("VirtualServices"), RD_POLICY_VS);
    ck_assert_int_eq(rd_policy_kind_parse("dr"), RD_POLICY_DR);
    ck_assert_int_eq(rd_policy_kind_parse("pods"), -1);

    /* a syntax error: the stream's line */
    s = "kind: VirtualService\n---\nspec: [\n";
    ck_assert_int_eq(rd_policy_split(s, strlen(s), &v, &n, &e), -1);
    ck_assert_int_eq(e.line, 4);
}
END_TEST


START_TEST(policy_stored_form_round_trips)
{
    char          err[RD_ERR_LEN];
    mesh_buf_t    b;
    rd_policy_t  *p, *q;

    p = parse_ok("rt", DR_SUBSETS "---\n" VS_V2);
    p->create_index = 3;
    p->modify_index = 9;

    mesh_buf_init(&b, 0);
    rd_policy_to_stored(&b, p);

    q = rd_policy_from_stored("rt", b.data, b.len, err);
    ck_assert_msg(q != NULL, "%s", err);
    ck_assert_str_eq(q->yaml, p->yaml);
    ck_assert(json_equal(q->docs, p->docs));
    ck_assert_uint_eq(q->create_index, 3);
    ck_assert_uint_eq(q->modify_index, 9);

    ck_assert_ptr_null(rd_policy_from_stored("rt", "{}", 2, err));

    mesh_buf_free(&b);
    rd_policy_free(p);
    rd_policy_free(q);
}
END_TEST


/* through the registry: writer, store, snapshot, reload */

static int
do_policy(rd_registry_t *reg, int type, const char *name, const char *yaml,
    uint64_t *index, rd_policy_err_t *perr)
{
    int               status;
    rd_op_t          *op;
    rd_policy_err_t   e;
    ck_waiter_t       w;

    op = rd_op_create(type, "", name);
    ck_assert_ptr_nonnull(op);

    if (yaml) {
        op->policy = rd_policy_parse(name, yaml, strlen(yaml), &e);
        ck_assert_msg(op->policy != NULL, "%s", e.msg);
    }

    ck_waiter_init(&w);
    ck_submit(reg, &w, op);
    ck_wait(&w, 1);
    ck_waiter_free(&w);

    status = op->status;
    if (index) {
        *index = op->index;
    }
    if (perr) {
        *perr = op->perr;
    }

    rd_op_free(op);
    return status;
}


START_TEST(policy_registry_put_check_delete_reload)
{
    char              dir[PATH_MAX], err[RD_ERR_LEN] = "";
    json_t           *snap, *pols;
    mesh_buf_t        b;
    uint64_t          index, i2;
    rd_store_t       *store;
    rd_registry_t    *reg;
    json_error_t      jerr;
    rd_policy_err_t   e;

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);

    /* a route to an undefined subset: 400, nothing changes */
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "b", VS_V2, &index,
                               &e), 400);
    ck_assert_str_eq(e.field, "spec.http[0].route[0].destination.subset");
    ck_assert_uint_eq(rd_registry_index(reg), 0);

    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "a", DR_SUBSETS,
                               &index, NULL), 201);
    ck_assert_uint_eq(index, 1);
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "b", VS_V2, &index,
                               NULL), 201);
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "a", DR_SUBSETS,
                               &index, NULL), 200);
    ck_assert_uint_eq(index, 3);

    /* a second DestinationRule for orders under another name */
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "c", DR_SUBSETS,
                               NULL, &e), 400);
    ck_assert_uint_eq(rd_registry_index(reg), 3);

    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_DEL, "zz", NULL, NULL,
                               NULL), 404);
    ck_assert_uint_eq(rd_registry_index(reg), 3);

    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "c", VS_V2 "---\n"
                               DR_SUBSETS, NULL, &e), 400);

    /* restart: both come back, in name order, in the snapshot */
    ck_reg_close(reg, store);
    reg = ck_reg_open(dir, &store);
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
    ck_assert_uint_eq(reg->npolicies, 2);
    ck_assert_uint_eq(reg->policies[0]->create_index, 1);
    ck_assert_uint_eq(reg->policies[0]->modify_index, 3);

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &i2);
    ck_assert_uint_eq(i2, 3);
    snap = json_loadb(b.data, b.len, 0, &jerr);
    ck_assert_msg(snap != NULL, "%s", jerr.text);
    pols = json_object_get(snap, "policies");
    ck_assert_uint_eq(json_array_size(pols), 2);
    ck_assert_str_eq(json_string_value(json_object_get(
        json_array_get(pols, 0), "policy")), "a");
    ck_assert_str_eq(json_string_value(json_object_get(
        json_array_get(pols, 1), "kind")), "VirtualService");
    json_decref(snap);
    mesh_buf_free(&b);

    /* deleting the DestinationRule is allowed (documented) */
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_DEL, "a", NULL, &index,
                               NULL), 200);
    ck_assert_uint_eq(index, 4);
    ck_assert_uint_eq(reg->npolicies, 1);

    ck_reg_close(reg, store);
    reg = ck_reg_open(dir, &store);
    ck_assert_uint_eq(reg->npolicies, 1);
    ck_assert_str_eq(reg->policies[0]->name, "b");
    ck_assert_uint_eq(rd_registry_index(reg), 4);
    ck_reg_close(reg, store);

    ck_rmrf(dir);
}
END_TEST


/* a root and its delegates, as the snapshot carries them */

#define ROOT  "apiVersion: networking.istio.io/v1\n"                     \
              "kind: VirtualService\n"                                  \
              "metadata: {name: root, namespace: shop}\n"               \
              "spec:\n"                                                 \
              "  hosts: [orders]\n"                                     \
              "  http:\n"                                               \
              "  - name: api\n"                                         \
              "    match: [{uri: {prefix: /api/}, headers: {x-a: {exact: \"1\"}}}]\n" \
              "    timeout: 2s\n"                                       \
              "    delegate: {name: api}\n"                             \
              "  - match: [{uri: {prefix: /other/}}]\n"                 \
              "    delegate: {name: other, namespace: ops}\n"           \
              "  - route:\n"                                            \
              "    - destination: {host: orders, subset: v1}\n"

#define DLG   "apiVersion: networking.istio.io/v1\n"                     \
              "kind: VirtualService\n"                                  \
              "metadata: {name: api, namespace: shop}\n"                \
              "spec:\n"                                                 \
              "  http:\n"                                               \
              "  - name: v2\n"                                          \
              "    match: [{uri: {prefix: /api/v2/}}, {uri: {exact: /api/x}, headers: {x-b: {prefix: b}}}]\n" \
              "    route:\n"                                            \
              "    - destination: {host: orders, subset: v2}\n"         \
              "  - match: [{uri: {prefix: /elsewhere/}}]\n"             \
              "    route:\n"                                            \
              "    - destination: {host: orders, subset: v2}\n"         \
              "  - timeout: 5s\n"                                       \
              "    route:\n"                                            \
              "    - destination: {host: orders, subset: v1}\n"

static json_t *
snapshot_http(rd_registry_t *reg, size_t *npolicies)
{
    json_t        *snap, *pols, *http;
    uint64_t       i;
    mesh_buf_t     b;
    json_error_t   jerr;

    mesh_buf_init(&b, 0);
    rd_snapshot_build(reg, &b, &i);
    snap = json_loadb(b.data, b.len, 0, &jerr);
    ck_assert_msg(snap != NULL, "%s", jerr.text);
    mesh_buf_free(&b);

    pols = json_object_get(snap, "policies");
    *npolicies = json_array_size(pols);
    http = json_incref(json_object_get(json_array_get(pols,
                                                      *npolicies - 1),
                                       "http"));
    json_decref(snap);

    return http;
}


START_TEST(policy_registry_delegates_merge_into_roots)
{
    char              dir[PATH_MAX], err[RD_ERR_LEN] = "";
    size_t            n;
    json_t           *http;
    rd_store_t       *store;
    rd_registry_t    *reg;
    rd_policy_err_t   e;

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);

    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "a", DR_SUBSETS "  - "
                               "name: v1\n    labels: {version: v1}\n",
                               NULL, &e), 201);
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "root", ROOT, NULL,
                               &e), 201);

    /* no delegate yet: the root's items route nothing */
    http = snapshot_http(reg, &n);
    ck_assert_uint_eq(n, 2);
    expect_json(http, "[{\"match\": [], \"route\": [{\"destination\": "
                "{\"host\": \"orders\", \"subset\": \"v1\"}, \"weight\": 100}]}]");
    json_decref(http);

    /* the delegate: its routes in the root's place, matches merged, the
     * one outside the root's match left out, the timeout inherited */
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_PUT, "dlg", DLG, NULL, &e),
                     201);
    http = snapshot_http(reg, &n);
    ck_assert_uint_eq(n, 2);                /* no delegate carried */
    expect_json(http, "["
        "{\"name\": \"api-v2\", \"timeoutMs\": 2000, \"match\": ["
        " {\"uri\": {\"prefix\": \"/api/v2/\"}, \"headers\": {\"x-a\": {\"exact\": \"1\"}}},"
        " {\"uri\": {\"exact\": \"/api/x\"}, \"headers\": {\"x-a\": {\"exact\": \"1\"},"
        "  \"x-b\": {\"prefix\": \"b\"}}}],"
        " \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": \"v2\"}, \"weight\": 100}]},"
        "{\"name\": \"api\", \"timeoutMs\": 5000, \"match\": ["
        " {\"uri\": {\"prefix\": \"/api/\"}, \"headers\": {\"x-a\": {\"exact\": \"1\"}}}],"
        " \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": \"v1\"}, \"weight\": 100}]},"
        "{\"match\": [], \"route\": [{\"destination\": {\"host\": \"orders\", \"subset\": \"v1\"}, \"weight\": 100}]}]");
    json_decref(http);

    /* restart: merged again from the store */
    ck_reg_close(reg, store);
    reg = ck_reg_open(dir, &store);
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
    http = snapshot_http(reg, &n);
    ck_assert_uint_eq(json_array_size(http), 3);
    json_decref(http);

    /* the delegate gone: its routes with it */
    ck_assert_int_eq(do_policy(reg, RD_OP_POLICY_DEL, "dlg", NULL, NULL,
                               NULL), 200);
    http = snapshot_http(reg, &n);
    ck_assert_uint_eq(json_array_size(http), 1);
    json_decref(http);

    ck_reg_close(reg, store);
    ck_rmrf(dir);
}
END_TEST


START_TEST(policy_registry_batch_sees_earlier_ops)
{
    char              dir[PATH_MAX], err[RD_ERR_LEN] = "";
    rd_op_t          *a, *b;
    rd_store_t       *store;
    rd_registry_t    *reg;
    rd_policy_err_t   e;
    ck_waiter_t       w;

    ck_tmpdir(dir, sizeof(dir));
    reg = ck_reg_open(dir, &store);

    /* queued before the writer starts: one batch; b needs a's subset */
    a = rd_op_create(RD_OP_POLICY_PUT, "", "a");
    a->policy = rd_policy_parse("a", DR_SUBSETS, strlen(DR_SUBSETS), &e);
    b = rd_op_create(RD_OP_POLICY_PUT, "", "b");
    b->policy = rd_policy_parse("b", VS_V2, strlen(VS_V2), &e);
    ck_assert_ptr_nonnull(a->policy);
    ck_assert_ptr_nonnull(b->policy);

    ck_waiter_init(&w);
    ck_submit(reg, &w, a);
    ck_submit(reg, &w, b);
    ck_assert_msg(rd_registry_start(reg, err) == 0, "%s", err);
    ck_wait(&w, 2);
    ck_waiter_free(&w);

    ck_assert_int_eq(a->status, 201);
    ck_assert_int_eq(b->status, 201);
    ck_assert_uint_eq(b->index, 2);
    ck_assert_uint_eq(reg->npolicies, 2);

    rd_op_free(a);
    rd_op_free(b);
    ck_reg_close(reg, store);
    ck_rmrf(dir);
}
END_TEST


Suite *
policy_suite(void)
{
    Suite  *s;
    TCase  *tc;

    s = suite_create("policy");

    tc = tcase_create("parse");
    tcase_add_loop_test(tc, policy_parse_bad_document_names_field_line_column,
                        0, (int) (sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, policy_parse_destination_rule_normalizes);
    tcase_add_loop_test(tc, policy_parse_locality_refused_as_istio, 0,
                        sizeof(bad_locality) / sizeof(bad_locality[0]));
    tcase_add_test(tc, policy_parse_locality_and_warmup_normalize);
    tcase_add_test(tc, policy_parse_tls_normalizes);
    tcase_add_test(tc, policy_parse_port_tls_normalizes);
    tcase_add_test(tc, policy_parse_virtual_service_normalizes);
    tcase_add_test(tc, policy_parse_match_case_and_source_labels_normalize);
    tcase_add_test(tc, policy_parse_request_shaping_normalizes);
    tcase_add_test(tc, policy_parse_retries_follow_istio);
    tcase_add_test(tc, policy_parse_cors_normalizes);
    tcase_add_test(tc, policy_parse_mirrors_normalize);
    tcase_add_test(tc, policy_parse_empty_documents_are_skipped);
    tcase_add_test(tc, policy_parse_takes_kubectl_output_and_mesh_gateways);
    tcase_add_test(tc, policy_check_subsets_and_hosts_across_policies);
    tcase_add_test(tc, policy_check_subset_of_wildcard_rule);
    tcase_add_test(tc, policy_stored_form_round_trips);
    tcase_add_test(tc, policy_objects_split_and_name);
    tcase_add_test(tc, policy_hosts_fqdn_map_to_services);
    tcase_add_test(tc, policy_gateway_normalized);
    tcase_add_test(tc, policy_gateway_stream_servers_normalized);
    tcase_add_test(tc, policy_istio_tcp_echo_gateway_accepted);
    tcase_add_test(tc, policy_tls_routes_normalized);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_test(tc, policy_registry_put_check_delete_reload);
    tcase_add_test(tc, policy_registry_batch_sees_earlier_ops);
    tcase_add_test(tc, policy_registry_delegates_merge_into_roots);
    suite_add_tcase(s, tc);

    return s;
}

/* sse_jwt.h - verification of JSON Web Tokens (RFC 7519) in JWS compact
 * form, signed with HS256, RS256 or ES256, and the channel patterns their
 * claims grant. APR and OpenSSL 3 libcrypto only.
 */
#ifndef SSE_JWT_H
#define SSE_JWT_H

#include "apr_pools.h"
#include "apr_tables.h"

#define SSE_JWT_MAX_TOKEN   8192    /* bytes in a compact token */
#define SSE_JWT_MAX_DEPTH   16      /* nesting in its header and claims */
#define SSE_JWT_MIN_SECRET  32      /* bytes in an HS256 secret */
#define SSE_JWT_MIN_RSA     2048    /* bits in an RS256 key */

typedef enum {
    SSE_JWT_HS256 = 1,      /* HMAC with SHA-256, a shared secret */
    SSE_JWT_RS256,          /* RSASSA-PKCS1-v1_5 with SHA-256 */
    SSE_JWT_ES256           /* ECDSA on P-256 with SHA-256 */
} sse_jwt_alg;

/* A verification key of one algorithm; opaque. */
typedef struct sse_jwt_key sse_jwt_key;

/* What a valid token grants. */
typedef struct sse_jwt_claims {
    apr_array_header_t *subscribe;  /* "sse_subscribe": const char *
                                     * patterns; NULL when absent */
    apr_array_header_t *publish;    /* "sse_publish": likewise */
    const char *subject;            /* "sub", or NULL when absent */
    apr_int64_t exp;                /* "exp", or 0 when absent */
} sse_jwt_claims;

/* Returns the JWS name of alg ("HS256", ...), or NULL for another value. */
const char *sse_jwt_alg_name(sse_jwt_alg alg);

/* Returns the algorithm named name exactly ("HS256", "RS256", "ES256"), or
 * 0 for any other name. */
sse_jwt_alg sse_jwt_alg_parse(const char *name);

/* Loads the key for alg from the file at path:
 *   HS256  the secret: the file's raw bytes, less trailing CR and LF; at
 *          least SSE_JWT_MIN_SECRET bytes, at most 64 KB
 *   RS256  a PEM RSA public key ("BEGIN PUBLIC KEY", SubjectPublicKeyInfo)
 *          or a PEM certificate holding one; at least SSE_JWT_MIN_RSA bits
 *   ES256  a PEM EC public key on P-256 (prime256v1), or a certificate
 * A file holding a private key is refused: the server needs only the
 * public half. The key and its OpenSSL object live until p is cleared
 * (a cleanup of p frees them and wipes a secret).
 * Returns NULL and sets *key on success; else *key is NULL and the return
 * value, allocated from p, names the file and says what is wrong, for
 * "apachectl configtest". */
const char *sse_jwt_key_load(apr_pool_t *p, sse_jwt_alg alg,
                             const char *path, sse_jwt_key **key);

/* Returns the algorithm key was loaded for. */
sse_jwt_alg sse_jwt_key_alg(const sse_jwt_key *key);

/* Verifies the compact token token[0..len) with key at the time now
 * (seconds since the epoch), and reads its claims.
 *
 * The token must be exactly three base64url parts (no padding, no white
 * space), at most SSE_JWT_MAX_TOKEN bytes. Its header must name key's
 * algorithm in "alg" and have no "crit"; "typ" and "kid" are ignored.
 * The signature is checked before any claim is read. The claims must be a
 * JSON object; "exp" and "nbf", when present, are integers (exp <= now is
 * expired, nbf > now not yet valid); "sub" is a string; "sse_subscribe"
 * and "sse_publish" are arrays of channel patterns (see
 * sse_jwt_allows()). When audience is not NULL, "aud" (a string or an
 * array of strings) must contain it; when it is NULL, a token with "aud"
 * is refused (it is meant for someone who names themselves). Other claims
 * are ignored.
 *
 * Returns NULL when the token is valid, and fills *claims (allocated from
 * p). Else *claims is zeroed and the return value is a short reason for
 * the error log (static or from p) made of fixed texts only: it never
 * holds the token or any part of it. One of
 *   "token larger than 8192 bytes"
 *   "malformed token: ..."    the parts, base64url, JSON, or a claim of
 *                             the wrong type
 *   "alg none refused"
 *   "algorithm XX does not match the configured key (YY)"  XX a known
 *                             JWS name
 *   "unsupported algorithm (the configured key is YY)"
 *   "crit header refused"
 *   "bad signature"
 *   "expired", "not yet valid (nbf)"
 *   "audience mismatch", "audience mismatch (no \"aud\")",
 *   "audience mismatch (the token names one, none is configured)" */
const char *sse_jwt_verify(apr_pool_t *p, const sse_jwt_key *key,
                           const char *token, apr_size_t len,
                           apr_int64_t now, const char *audience,
                           sse_jwt_claims *claims);

/* Returns non-zero when channel matches one of patterns (const char *):
 * a pattern is an exact channel name, or a prefix ending in '*' that
 * matches any rest, empty included ("news.*" matches "news.a" and "news.";
 * "*" alone matches every channel). Returns 0 when patterns is NULL. */
int sse_jwt_allows(const apr_array_header_t *patterns, const char *channel);

#endif /* SSE_JWT_H */

/* sse_jwt.c - verification of JSON Web Tokens: JWS compact form (RFC
 * 7515) with HS256, RS256 or ES256 (RFC 7518), claims per RFC 7519, and
 * the channel patterns of mod_sse's own claims.
 *
 * The configured key decides the algorithm; a token's "alg" only has to
 * agree with it. So "none" and algorithm confusion (an HS256 token whose
 * "secret" is an RSA public key everybody has) cannot get in: a key is
 * used for exactly one algorithm. Every reason returned is a fixed text,
 * because tokens are credentials and the reasons go to the error log.
 *
 * OpenSSL keeps a per-thread error queue that mod_ssl reads too; each
 * public function takes back whatever errors it left there.
 */
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "apr_strings.h"
#include "apr_file_io.h"

#include "sse_event.h"
#include "sse_json.h"
#include "sse_jwt.h"

#define KEY_FILE_MAX  (64 * 1024)   /* no key or secret file is larger */
#define HS256_LEN     32            /* bytes in an HMAC-SHA256 */
#define ES256_LEN     64            /* bytes in R || S on P-256 */

struct sse_jwt_key {
    sse_jwt_alg alg;
    EVP_PKEY *pkey;             /* RS256, ES256: freed by a cleanup of p */
    unsigned char *secret;      /* HS256: wiped by a cleanup of p */
    apr_size_t secret_len;
};

static const char *const alg_names[] = { NULL, "HS256", "RS256", "ES256" };

/* JWS algorithm names (RFC 7518, 8037, 8812), so that a mismatch can be
 * named by our own copy of the name, never by what the token says. */
static const char *const jws_algs[] = {
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
    "ES512", "ES256K", "PS256", "PS384", "PS512", "EdDSA", NULL
};

const char *sse_jwt_alg_name(sse_jwt_alg alg)
{
    return (alg >= SSE_JWT_HS256 && alg <= SSE_JWT_ES256) ? alg_names[alg]
                                                           : NULL;
}

sse_jwt_alg sse_jwt_alg_parse(const char *name)
{
    int i;
    for (i = SSE_JWT_HS256; i <= SSE_JWT_ES256; i++) {
        if (!strcmp(name, alg_names[i])) return (sse_jwt_alg)i;
    }
    return 0;
}

sse_jwt_alg sse_jwt_key_alg(const sse_jwt_key *key)
{
    return key->alg;
}

/* ---- keys ---- */

static apr_status_t key_cleanup(void *data)
{
    sse_jwt_key *key = data;
    EVP_PKEY_free(key->pkey);
    key->pkey = NULL;
    if (key->secret) {
        OPENSSL_cleanse(key->secret, key->secret_len);
        key->secret = NULL;
    }
    return APR_SUCCESS;
}

/* Reads the whole file at path into a NUL-terminated buffer from p. */
static const char *read_key_file(apr_pool_t *p, const char *path,
                                 char **buf, apr_size_t *len)
{
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_status_t rv;
    const char *why = NULL;
    char err[128];

    if ((rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0,
                            p)) != APR_SUCCESS
        || (rv = apr_file_info_get(&fi, APR_FINFO_SIZE | APR_FINFO_TYPE,
                                   f)) != APR_SUCCESS) {
        goto cleanup;
    }
    if (fi.filetype != APR_REG) {
        why = "not a regular file";
    }
    else if (fi.size > KEY_FILE_MAX) {
        why = "larger than 64 KB, so not a key";
    }
    else {
        *buf = apr_palloc(p, (apr_size_t)fi.size + 1);
        rv = apr_file_read_full(f, *buf, (apr_size_t)fi.size, len);
        (*buf)[*len] = '\0';
    }
cleanup:
    if (f) apr_file_close(f);
    if (rv != APR_SUCCESS) {
        why = apr_pstrcat(p, "cannot read it: ",
                          apr_strerror(rv, err, sizeof(err)), NULL);
    }
    return why ? apr_psprintf(p, "%s: %s", path, why) : NULL;
}

static const char *load_secret(apr_pool_t *p, const char *path, char *buf,
                               apr_size_t len, sse_jwt_key *key)
{
    apr_size_t n = len;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    /* the classic confusion: configuring a public key as the secret makes
     * everyone who has that key able to sign tokens */
    if (strstr(buf, "-----BEGIN ")) {
        OPENSSL_cleanse(buf, len);
        return apr_psprintf(p, "%s: holds a PEM key or certificate; HS256 "
                            "needs a secret of random bytes", path);
    }
    if (n < SSE_JWT_MIN_SECRET) {
        OPENSSL_cleanse(buf, len);
        return apr_psprintf(p, "%s: the secret has %" APR_SIZE_T_FMT
                            " bytes; HS256 needs at least %d (e.g. openssl "
                            "rand -hex 32)", path, n, SSE_JWT_MIN_SECRET);
    }
    key->secret = (unsigned char *)buf;
    key->secret_len = n;
    return NULL;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0;       /* never prompt on the terminal */
}

/* Reads a PEM public key, or else a PEM certificate's public key. */
static EVP_PKEY *read_public_pem(const char *pem, apr_size_t len)
{
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);

    if (bio) {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
        BIO_free(bio);
    }
    if (!pkey && (bio = BIO_new_mem_buf(pem, (int)len))) {
        cert = PEM_read_bio_X509(bio, NULL, no_password, NULL);
        BIO_free(bio);
    }
    if (cert) {
        pkey = X509_get_pubkey(cert);
        X509_free(cert);
    }
    return pkey;
}

/* Checks that pkey is of the kind and strength alg needs. */
static const char *check_public_key(apr_pool_t *p, const char *path,
                                    sse_jwt_alg alg, EVP_PKEY *pkey)
{
    const char *type = EVP_PKEY_get0_type_name(pkey);
    char group[64];
    size_t glen = 0;
    int nid;

    if (!type) type = "unknown";
    if (alg == SSE_JWT_RS256) {
        /* RSA-PSS keys are another type: RS256 is PKCS #1 v1.5 */
        if (!EVP_PKEY_is_a(pkey, "RSA")) {
            return apr_psprintf(p, "%s: holds a key of type %s; RS256 needs "
                                "an RSA key", path, type);
        }
        if (EVP_PKEY_get_bits(pkey) < SSE_JWT_MIN_RSA) {
            return apr_psprintf(p, "%s: the RSA key has %d bits; RS256 "
                                "needs at least %d", path,
                                EVP_PKEY_get_bits(pkey), SSE_JWT_MIN_RSA);
        }
        return NULL;
    }
    if (!EVP_PKEY_is_a(pkey, "EC")) {
        return apr_psprintf(p, "%s: holds a key of type %s; ES256 needs an "
                            "EC key on P-256", path, type);
    }
    if (!EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen)) {
        group[0] = '\0';
    }
    nid = OBJ_sn2nid(group);
    if (nid == NID_undef) nid = EC_curve_nist2nid(group);
    if (nid != NID_X9_62_prime256v1) {
        return apr_psprintf(p, "%s: the EC key is on curve %s; ES256 needs "
                            "P-256 (prime256v1)", path,
                            group[0] ? group : "(unnamed)");
    }
    return NULL;
}

static const char *load_public(apr_pool_t *p, const char *path,
                               sse_jwt_alg alg, char *pem, apr_size_t len,
                               sse_jwt_key *key)
{
    const char *why = NULL;
    EVP_PKEY *pkey;

    if (strstr(pem, "PRIVATE KEY-----")) {
        OPENSSL_cleanse(pem, len);
        return apr_psprintf(p, "%s: holds a private key; give only the "
                            "public key (openssl pkey -in KEY -pubout)",
                            path);
    }
    if (!(pkey = read_public_pem(pem, len))) {
        return apr_psprintf(p, "%s: no PEM public key (BEGIN PUBLIC KEY) "
                            "or certificate in it", path);
    }
    if ((why = check_public_key(p, path, alg, pkey))) {
        EVP_PKEY_free(pkey);
        return why;
    }
    key->pkey = pkey;
    return NULL;
}

const char *sse_jwt_key_load(apr_pool_t *p, sse_jwt_alg alg,
                             const char *path, sse_jwt_key **out)
{
    sse_jwt_key *key;
    const char *why;
    char *buf;
    apr_size_t len;

    *out = NULL;
    if (!sse_jwt_alg_name(alg)) {
        return apr_psprintf(p, "%s: unknown algorithm", path);
    }
    if ((why = read_key_file(p, path, &buf, &len))) {
        return why;
    }
    key = apr_pcalloc(p, sizeof(*key));
    key->alg = alg;
    ERR_set_mark();
    why = (alg == SSE_JWT_HS256) ? load_secret(p, path, buf, len, key)
                                 : load_public(p, path, alg, buf, len, key);
    ERR_pop_to_mark();
    if (why) {
        return why;
    }
    apr_pool_cleanup_register(p, key, key_cleanup, apr_pool_cleanup_null);
    *out = key;
    return NULL;
}

/* ---- tokens ---- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes unpadded base64url strictly: any other character, a length
 * that no byte string encodes to, or non-zero bits left over at the end
 * (which would let two texts stand for one token) is refused.
 * Returns 0 on success, -1 otherwise. */
static int b64url_decode(apr_pool_t *p, const char *s, apr_size_t len,
                         char **out, apr_size_t *outlen)
{
    apr_uint32_t acc = 0;
    apr_size_t i, n = 0;
    int bits = 0;
    char *buf;

    if (len % 4 == 1) {
        return -1;
    }
    buf = apr_palloc(p, len / 4 * 3 + 3);
    for (i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            return -1;
        }
        acc = ((acc << 6) | (apr_uint32_t)v) & 0x3FFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) {
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

/* Says that the token's algorithm is not the key's. */
static const char *alg_mismatch(apr_pool_t *p, const sse_json_value *alg,
                                const sse_jwt_key *key)
{
    int i;
    for (i = 0; jws_algs[i]; i++) {
        if (alg->len == strlen(jws_algs[i])
            && !memcmp(alg->str, jws_algs[i], alg->len)) {
            return apr_psprintf(p, "algorithm %s does not match the "
                                "configured key (%s)", jws_algs[i],
                                alg_names[key->alg]);
        }
    }
    return apr_psprintf(p, "unsupported algorithm (the configured key is "
                        "%s)", alg_names[key->alg]);
}

static const char *check_header(apr_pool_t *p, const sse_jwt_key *key,
                                const char *json, apr_size_t len)
{
    sse_json_value *header;
    const sse_json_value *alg;
    const char *why;

    if ((why = sse_json_parse(p, json, len, SSE_JWT_MAX_DEPTH, &header))) {
        return apr_pstrcat(p, "malformed token: header: ", why, NULL);
    }
    if (header->type != SSE_JSON_OBJECT) {
        return "malformed token: header is not a JSON object";
    }
    alg = sse_json_get(header, "alg");
    if (!alg || alg->type != SSE_JSON_STRING) {
        return "malformed token: header has no \"alg\" string";
    }
    if (alg->len == 4 && !strncasecmp(alg->str, "none", 4)) {
        return "alg none refused";
    }
    if (alg->len != strlen(alg_names[key->alg])
        || memcmp(alg->str, alg_names[key->alg], alg->len)) {
        return alg_mismatch(p, alg, key);
    }
    /* crit names extensions the issuer says we must understand; we
     * understand none */
    if (sse_json_get(header, "crit")) {
        return "crit header refused";
    }
    return NULL;
}

/* JWS carries an ECDSA signature as R || S, 32 bytes each; OpenSSL wants
 * the DER ECDSA-Sig-Value. Returns NULL when sig cannot be one. */
static unsigned char *es256_der(apr_pool_t *p, const unsigned char *sig,
                                apr_size_t len, int *der_len)
{
    ECDSA_SIG *es;
    BIGNUM *r, *s;
    unsigned char *der = NULL, *w;

    if (len != ES256_LEN) {
        return NULL;
    }
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, ES256_LEN / 2, NULL);
    s = BN_bin2bn(sig + ES256_LEN / 2, ES256_LEN / 2, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
    }
    else if ((*der_len = i2d_ECDSA_SIG(es, NULL)) > 0) {
        der = w = apr_palloc(p, (apr_size_t)*der_len);
        if (i2d_ECDSA_SIG(es, &w) != *der_len) der = NULL;
    }
    ECDSA_SIG_free(es);
    return der;
}

static int digest_verify(EVP_PKEY *pkey, sse_jwt_alg alg,
                         const unsigned char *sig, apr_size_t sig_len,
                         const char *text, apr_size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx
        && EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, pkey) == 1
        && (alg != SSE_JWT_RS256
            || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1)
        && EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)text,
                            len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Non-zero when sig is key's signature of text (the "header.payload"
 * the token starts with). */
static int signature_ok(apr_pool_t *p, const sse_jwt_key *key,
                        const char *text, apr_size_t len,
                        const unsigned char *sig, apr_size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE], *der;
    unsigned int mac_len = 0;
    int der_len = 0;

    switch (key->alg) {
    case SSE_JWT_HS256:
        return sig_len == HS256_LEN
               && HMAC(EVP_sha256(), key->secret, (int)key->secret_len,
                       (const unsigned char *)text, len, mac, &mac_len)
               && mac_len == HS256_LEN
               && CRYPTO_memcmp(mac, sig, HS256_LEN) == 0;
    case SSE_JWT_RS256:
        return digest_verify(key->pkey, key->alg, sig, sig_len, text, len);
    case SSE_JWT_ES256:
        der = es256_der(p, sig, sig_len, &der_len);
        return der && digest_verify(key->pkey, key->alg, der,
                                    (apr_size_t)der_len, text, len);
    }
    return 0;
}

/* Non-zero when s[0..len) is a channel name, or a prefix of one followed
 * by '*'. */
static int pattern_ok(const char *s, apr_size_t len)
{
    if (len && s[len - 1] == '*') {
        len--;
        if (!len) return 1;
    }
    return sse_channel_name_problem(s, len) == NULL;
}

/* Reads claim name, an array of channel patterns, into *out (NULL when
 * the claim is absent). */
static const char *read_patterns(apr_pool_t *p, const sse_json_value *claims,
                                 const char *name, apr_array_header_t **out)
{
    const sse_json_value *v = sse_json_get(claims, name), *m;

    *out = NULL;
    if (!v) {
        return NULL;
    }
    if (v->type != SSE_JSON_ARRAY) {
        return apr_pstrcat(p, "malformed token: \"", name, "\" is not an "
                           "array", NULL);
    }
    *out = apr_array_make(p, (int)v->count, sizeof(const char *));
    for (m = v->child; m; m = m->next) {
        if (m->type != SSE_JSON_STRING || !pattern_ok(m->str, m->len)) {
            return apr_pstrcat(p, "malformed token: \"", name, "\" holds "
                               "something other than a channel pattern",
                               NULL);
        }
        APR_ARRAY_PUSH(*out, const char *) = m->str;
    }
    return NULL;
}

static int string_is(const sse_json_value *v, const char *s)
{
    return v->type == SSE_JSON_STRING && v->len == strlen(s)
           && !memcmp(v->str, s, v->len);
}

static const char *check_audience(const sse_json_value *aud,
                                  const char *audience)
{
    const sse_json_value *m;
    int found = 0;

    if (!aud) {
        return "audience mismatch (no \"aud\")";
    }
    if (aud->type == SSE_JSON_STRING) {
        return string_is(aud, audience) ? NULL : "audience mismatch";
    }
    if (aud->type != SSE_JSON_ARRAY) {
        return "malformed token: \"aud\" is neither a string nor an array";
    }
    for (m = aud->child; m; m = m->next) {
        if (m->type != SSE_JSON_STRING) {
            return "malformed token: \"aud\" holds a non-string";
        }
        found |= string_is(m, audience);
    }
    return found ? NULL : "audience mismatch";
}

/* Reads an optional NumericDate; only whole seconds are taken. */
static const char *read_time(const sse_json_value *claims, const char *name,
                             apr_int64_t *t, int *present)
{
    const sse_json_value *v = sse_json_get(claims, name);
    *present = v != NULL;
    if (v && sse_json_int64(v, t)) {
        return "malformed token: a time (\"exp\" or \"nbf\") is not an "
               "integer";
    }
    return NULL;
}

static const char *read_claims(apr_pool_t *p, const char *json,
                               apr_size_t len, apr_int64_t now,
                               const char *audience, sse_jwt_claims *c)
{
    sse_json_value *claims;
    const sse_json_value *sub;
    const char *why;
    apr_int64_t t;
    int present;

    if ((why = sse_json_parse(p, json, len, SSE_JWT_MAX_DEPTH, &claims))) {
        return apr_pstrcat(p, "malformed token: claims: ", why, NULL);
    }
    if (claims->type != SSE_JSON_OBJECT) {
        return "malformed token: claims are not a JSON object";
    }
    if ((why = read_time(claims, "exp", &t, &present))) {
        return why;
    }
    if (present && t <= now) {
        return "expired";
    }
    c->exp = present ? t : 0;
    if ((why = read_time(claims, "nbf", &t, &present))) {
        return why;
    }
    if (present && t > now) {
        return "not yet valid (nbf)";
    }
    /* RFC 7519 4.1.3: a recipient that does not find itself in "aud"
     * must reject the token, and one without a configured audience never
     * does: a token meant for another service is not ours */
    if (!audience && sse_json_get(claims, "aud")) {
        return "audience mismatch (the token names one, none is configured)";
    }
    if (audience
        && (why = check_audience(sse_json_get(claims, "aud"), audience))) {
        return why;
    }
    if ((sub = sse_json_get(claims, "sub"))) {
        /* a NUL would cut the C string short: another subject */
        if (sub->type != SSE_JSON_STRING || memchr(sub->str, '\0', sub->len)) {
            return "malformed token: \"sub\" is not a string";
        }
        c->subject = sub->str;
    }
    if ((why = read_patterns(p, claims, "sse_subscribe", &c->subscribe))
        || (why = read_patterns(p, claims, "sse_publish", &c->publish))) {
        return why;
    }
    return NULL;
}

static const char *verify(apr_pool_t *p, const sse_jwt_key *key,
                          const char *token, apr_size_t len,
                          apr_int64_t now, const char *audience,
                          sse_jwt_claims *c)
{
    const char *dot1, *dot2, *end = token + len, *why;
    char *header, *payload, *sig;
    apr_size_t hlen, plen, slen;

    if (len > SSE_JWT_MAX_TOKEN) {
        return "token larger than 8192 bytes";
    }
    dot1 = memchr(token, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', (apr_size_t)(end - dot1 - 1)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', (apr_size_t)(end - dot2 - 1))) {
        return "malformed token: not three parts";
    }
    if (b64url_decode(p, token, (apr_size_t)(dot1 - token), &header, &hlen)
        || b64url_decode(p, dot1 + 1, (apr_size_t)(dot2 - dot1 - 1),
                         &payload, &plen)
        || b64url_decode(p, dot2 + 1, (apr_size_t)(end - dot2 - 1),
                         &sig, &slen)) {
        return "malformed token: bad base64url";
    }
    if ((why = check_header(p, key, header, hlen))) {
        return why;
    }
    /* no claim is looked at before the signature holds */
    if (!signature_ok(p, key, token, (apr_size_t)(dot2 - token),
                      (const unsigned char *)sig, slen)) {
        return "bad signature";
    }
    return read_claims(p, payload, plen, now, audience, c);
}

const char *sse_jwt_verify(apr_pool_t *p, const sse_jwt_key *key,
                           const char *token, apr_size_t len,
                           apr_int64_t now, const char *audience,
                           sse_jwt_claims *claims)
{
    sse_jwt_claims c;
    const char *why;

    memset(&c, 0, sizeof(c));
    memset(claims, 0, sizeof(*claims));
    ERR_set_mark();
    why = verify(p, key, token, len, now, audience, &c);
    ERR_pop_to_mark();
    if (!why) {
        *claims = c;
    }
    return why;
}

int sse_jwt_allows(const apr_array_header_t *patterns, const char *channel)
{
    int i;

    if (!patterns) {
        return 0;
    }
    for (i = 0; i < patterns->nelts; i++) {
        const char *pat = APR_ARRAY_IDX(patterns, i, const char *);
        apr_size_t n = strlen(pat);
        if ((n && pat[n - 1] == '*') ? !strncmp(channel, pat, n - 1)
                                     : !strcmp(channel, pat)) {
            return 1;
        }
    }
    return 0;
}

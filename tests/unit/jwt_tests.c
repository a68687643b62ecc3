/* jwt_tests.c - unit tests of sse_jwt.c. The keys are made at test time in
 * a temporary directory, and tokens are signed here with libcrypto, so no
 * key or token is kept in the repository and no outside tool is needed.
 */
#include <stdlib.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "apr_strings.h"

#include "sse_jwt.h"
#include "unit.h"

#define NOW 1700000000      /* the tests' "now", seconds since the epoch */

static apr_pool_t *pool;
static char dir[64];        /* the temporary directory for key files */

/* A signer: the algorithm and its private key or secret. */
typedef struct {
    const char *alg;        /* the "alg" to sign with, e.g. "HS256" */
    EVP_PKEY *priv;         /* RS256, ES256 */
    const unsigned char *secret;
    size_t secret_len;
} signer;

static unsigned char secret[32], other_secret[48];
static EVP_PKEY *rsa, *rsa_other, *ec, *ec_other;
static signer hs, hs_other, rs, rs_other, es, es_other;
static sse_jwt_key *hs_key, *rs_key, *rs_cert_key, *es_key;

static const char *path_of(const char *name)
{
    return apr_pstrcat(pool, dir, "/", name, NULL);
}

static void write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path_of(name), "wb");
    CHECK(f && fwrite(data, 1, len, f) == len);
    if (f) fclose(f);
}

/* Writes pkey as a PEM public key, or as its private key with priv. */
static void write_pem(const char *name, EVP_PKEY *pkey, int priv)
{
    BIO *bio = BIO_new_file(path_of(name), "w");
    CHECK(bio && (priv ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0,
                                                  NULL, NULL)
                       : PEM_write_bio_PUBKEY(bio, pkey)));
    BIO_free(bio);
}

/* Writes a self-signed certificate for pkey. */
static void write_cert(const char *name, EVP_PKEY *pkey)
{
    X509 *x = X509_new();
    BIO *bio = BIO_new_file(path_of(name), "w");
    X509_NAME *subject;

    CHECK(x && bio);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               (const unsigned char *)"sse-test", -1, -1, 0);
    X509_set_issuer_name(x, subject);
    CHECK(X509_sign(x, pkey, EVP_sha256()) > 0);
    CHECK(PEM_write_bio_X509(bio, x));
    BIO_free(bio);
    X509_free(x);
}

static char *b64url(const void *data, size_t len)
{
    char *out = apr_palloc(pool, (len + 2) / 3 * 4 + 1), *r, *w;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    for (r = w = out; *r && *r != '='; r++) {
        *w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
    }
    *w = '\0';
    return out;
}

/* Returns the JWS signature of input by s, base64url-encoded. */
static char *sign(const signer *s, const char *input)
{
    unsigned char sig[1024], der[256], *d = der;
    size_t len = sizeof(sig), dlen = sizeof(der);
    unsigned int mlen = 0;
    EVP_MD_CTX *ctx;
    ECDSA_SIG *es_sig;

    if (s->secret) {
        CHECK(HMAC(EVP_sha256(), s->secret, (int)s->secret_len,
                   (const unsigned char *)input, strlen(input), sig, &mlen));
        return b64url(sig, mlen);
    }
    ctx = EVP_MD_CTX_new();
    CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, s->priv) == 1);
    if (EVP_PKEY_is_a(s->priv, "RSA")) {
        CHECK(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input,
                             strlen(input)) == 1);
        EVP_MD_CTX_free(ctx);
        return b64url(sig, len);
    }
    /* ECDSA: OpenSSL gives DER, JWS wants R || S */
    CHECK(EVP_DigestSign(ctx, der, &dlen, (const unsigned char *)input,
                         strlen(input)) == 1);
    EVP_MD_CTX_free(ctx);
    es_sig = d2i_ECDSA_SIG(NULL, (const unsigned char **)&d, (long)dlen);
    CHECK(es_sig != NULL);
    BN_bn2binpad(ECDSA_SIG_get0_r(es_sig), sig, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es_sig), sig + 32, 32);
    ECDSA_SIG_free(es_sig);
    return b64url(sig, 64);
}

/* Returns the token of header and claims (JSON texts) signed by s. */
static char *token(const signer *s, const char *header, const char *claims)
{
    char *input = apr_pstrcat(pool, b64url(header, strlen(header)), ".",
                              b64url(claims, strlen(claims)), NULL);
    return apr_pstrcat(pool, input, ".", sign(s, input), NULL);
}

static char *header_for(const signer *s)
{
    return apr_psprintf(pool, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", s->alg);
}

/* A token by s with the usual header. */
static char *tok(const signer *s, const char *claims)
{
    return token(s, header_for(s), claims);
}

static sse_jwt_claims last;

/* Verifies t against key at NOW; also checks that a refusal says nothing
 * of the token: neither any of its parts nor the marker "zq9" that the
 * tests put into claims. */
static const char *verify_aud(const sse_jwt_key *key, const char *t,
                              const char *audience)
{
    const char *why = sse_jwt_verify(pool, key, t, strlen(t), NOW, audience,
                                     &last);
    if (why) {
        const char *part = t, *dot;
        CHECK(!strstr(why, "zq9"));
        CHECK(!last.subscribe && !last.publish && !last.subject && !last.exp);
        while (*part) {
            apr_size_t n = (dot = strchr(part, '.')) ? (apr_size_t)(dot - part)
                                                     : strlen(part);
            if (n >= 4) {
                CHECK(!strstr(why, apr_pstrmemdup(pool, part, n)));
            }
            part += n + (dot != NULL);
        }
    }
    return why;
}

static const char *verify(const sse_jwt_key *key, const char *t)
{
    return verify_aud(key, t, NULL);
}

static void make_keys(void)
{
    strcpy(dir, "/tmp/sse_jwt_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    CHECK(RAND_bytes(secret, sizeof(secret)) == 1);
    CHECK(RAND_bytes(other_secret, sizeof(other_secret)) == 1);
    rsa = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    ec = EVP_EC_gen("P-256");
    ec_other = EVP_EC_gen("P-256");
    CHECK(rsa && rsa_other && ec && ec_other);

    hs = (signer){ "HS256", NULL, secret, sizeof(secret) };
    hs_other = (signer){ "HS256", NULL, other_secret, sizeof(other_secret) };
    rs = (signer){ "RS256", rsa, NULL, 0 };
    rs_other = (signer){ "RS256", rsa_other, NULL, 0 };
    es = (signer){ "ES256", ec, NULL, 0 };
    es_other = (signer){ "ES256", ec_other, NULL, 0 };

    write_file("secret", secret, sizeof(secret));
    write_pem("rsa.pem", rsa, 0);
    write_cert("rsa.crt", rsa);
    write_pem("ec.pem", ec, 0);
    CHECK(!sse_jwt_key_load(pool, SSE_JWT_HS256, path_of("secret"), &hs_key));
    CHECK(!sse_jwt_key_load(pool, SSE_JWT_RS256, path_of("rsa.pem"), &rs_key));
    CHECK(!sse_jwt_key_load(pool, SSE_JWT_RS256, path_of("rsa.crt"),
                            &rs_cert_key));
    CHECK(!sse_jwt_key_load(pool, SSE_JWT_ES256, path_of("ec.pem"), &es_key));
}

static void test_valid(void)
{
    const char *claims = "{\"sub\":\"alice\",\"exp\":1700000060,\"nbf\":"
                         "1700000000,\"iat\":1699999999.5,\"sse_subscribe\":"
                         "[\"news\",\"prices.*\"],\"sse_publish\":[\"*\"],"
                         "\"other\":{\"x\":[1,2]}}";
    const signer *signers[] = { &hs, &rs, &es, &rs };
    const sse_jwt_key *keys[] = { hs_key, rs_key, es_key, rs_cert_key };
    int i;

    CHECK(hs_key && rs_key && rs_cert_key && es_key);
    if (!hs_key || !rs_key || !rs_cert_key || !es_key) return;
    for (i = 0; i < 4; i++) {
        CHECK(verify(keys[i], tok(signers[i], claims)) == NULL);
        CHECK_STR("alice", last.subject);
        CHECK(last.exp == 1700000060);
        CHECK(last.subscribe && last.subscribe->nelts == 2
              && !strcmp(APR_ARRAY_IDX(last.subscribe, 1, const char *),
                         "prices.*"));
        CHECK(last.publish && last.publish->nelts == 1);
    }
    /* nothing but a signature is needed; absent claims stay empty */
    CHECK(verify(hs_key, tok(&hs, "{}")) == NULL);
    CHECK(!last.subscribe && !last.publish && !last.subject && !last.exp);
    CHECK(verify(hs_key, token(&hs, "{\"alg\":\"HS256\"}", "{}")) == NULL);
    /* typ and kid are not looked at */
    CHECK(verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\","
                               "\"kid\":\"k1\"}", "{}")) == NULL);
    /* an empty array grants nothing but is not absent */
    CHECK(verify(es_key, tok(&es, "{\"sse_subscribe\":[]}")) == NULL);
    CHECK(last.subscribe && last.subscribe->nelts == 0 && !last.publish);
    CHECK(sse_jwt_key_alg(rs_cert_key) == SSE_JWT_RS256
          && sse_jwt_key_alg(hs_key) == SSE_JWT_HS256
          && sse_jwt_key_alg(es_key) == SSE_JWT_ES256);
}

static void test_times(void)
{
    CHECK_STR("expired", verify(hs_key, tok(&hs, "{\"exp\":1699999999}")));
    CHECK_STR("expired", verify(hs_key, tok(&hs, "{\"exp\":1700000000}")));
    CHECK_STR("expired", verify(hs_key, tok(&hs, "{\"exp\":0}")));
    CHECK(!verify(hs_key, tok(&hs, "{\"exp\":1700000001}")));
    CHECK_STR("not yet valid (nbf)",
              verify(rs_key, tok(&rs, "{\"nbf\":1700000001}")));
    CHECK(!verify(rs_key, tok(&rs, "{\"nbf\":1700000000}")));
    CHECK_STR("expired", verify(es_key, tok(&es, "{\"nbf\":1,\"exp\":2}")));
}

static void test_wrong_key_and_alg(void)
{
    const char *c = "{\"sub\":\"zq9\"}";
    char *pem, *input, *t;
    FILE *f;
    long n = 0;

    CHECK_STR("bad signature", verify(hs_key, tok(&hs_other, c)));
    CHECK_STR("bad signature", verify(rs_key, tok(&rs_other, c)));
    CHECK_STR("bad signature", verify(es_key, tok(&es_other, c)));
    CHECK_STR("algorithm HS256 does not match the configured key (RS256)",
              verify(rs_key, tok(&hs, c)));
    CHECK_STR("algorithm RS256 does not match the configured key (HS256)",
              verify(hs_key, tok(&rs, c)));
    CHECK_STR("algorithm ES256 does not match the configured key (RS256)",
              verify(rs_key, tok(&es, c)));
    CHECK_STR("algorithm PS256 does not match the configured key (RS256)",
              verify(rs_key, token(&rs, "{\"alg\":\"PS256\"}", c)));
    CHECK_STR("unsupported algorithm (the configured key is HS256)",
              verify(hs_key, token(&hs, "{\"alg\":\"hs256\"}", c)));
    CHECK_STR("unsupported algorithm (the configured key is HS256)",
              verify(hs_key, token(&hs, "{\"alg\":\"zq9zq9\"}", c)));
    /* alg none, with an empty signature and with one */
    input = apr_pstrcat(pool, b64url("{\"alg\":\"none\"}", 14), ".",
                        b64url(c, strlen(c)), NULL);
    CHECK_STR("alg none refused", verify(hs_key, apr_pstrcat(pool, input,
                                                             ".", NULL)));
    CHECK_STR("alg none refused", verify(rs_key, apr_pstrcat(pool, input,
                                                             ".", NULL)));
    CHECK_STR("alg none refused", verify(es_key, token(&hs, "{\"alg\":"
                                                       "\"None\"}", c)));
    CHECK_STR("malformed token: not three parts", verify(hs_key, input));
    /* confusion: HMAC keyed with the RSA public key file, which anyone
     * may have, presented to a server that verifies RS256 */
    f = fopen(path_of("rsa.pem"), "rb");
    CHECK(f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0);
    if (!f) return;
    rewind(f);
    pem = apr_palloc(pool, (apr_size_t)n);
    CHECK(fread(pem, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    {
        signer confused = { "HS256", NULL, (unsigned char *)pem, (size_t)n };
        t = tok(&confused, c);
        CHECK_STR("algorithm HS256 does not match the configured key "
                  "(RS256)", verify(rs_key, t));
        CHECK_STR("algorithm HS256 does not match the configured key "
                  "(RS256)", verify(rs_cert_key, t));
    }
}

/* Returns t with the character at i (counted from the end when
 * negative) replaced by c. */
static char *with_char(const char *t, int i, char c)
{
    char *s = apr_pstrdup(pool, t);
    s[i < 0 ? (int)strlen(s) + i : i] = c;
    return s;
}

static void test_tampering(void)
{
    const char *c = "{\"sse_publish\":[\"zq9\"]}";
    const signer *signers[] = { &hs, &rs, &es };
    const sse_jwt_key *keys[] = { hs_key, rs_key, es_key };
    const size_t sig_len[] = { 32, 256, 64 };
    static const unsigned char zeros[256];
    char *t, *forged, *dot;
    int i;

    for (i = 0; i < 3; i++) {
        t = tok(signers[i], c);
        /* the claims of another token, with this token's signature */
        forged = tok(signers[i], "{\"sse_publish\":[\"*\"]}");
        dot = strrchr(t, '.');
        forged = apr_pstrcat(pool, apr_pstrmemdup(pool, forged,
                                                  strrchr(forged, '.')
                                                  - forged), dot, NULL);
        CHECK_STR("bad signature", verify(keys[i], forged));
        /* the signature's first character changed */
        CHECK_STR("bad signature", verify(keys[i], with_char(t, (int)(dot - t)
                                          + 1, dot[1] == 'A' ? 'B' : 'A')));
        /* a signature one byte short */
        CHECK_STR("bad signature", verify(keys[i], apr_pstrcat(pool,
                  apr_pstrndup(pool, t, (apr_size_t)(dot - t) + 1),
                  b64url(zeros, sig_len[i] - 1), NULL)));
        /* no signature */
        CHECK_STR("bad signature", verify(keys[i],
                  apr_pstrndup(pool, t, (apr_size_t)(dot - t) + 1)));
    }
    /* ES256 in DER, as OpenSSL makes it, is not the JWS form */
    {
        unsigned char der[80];
        size_t dlen = sizeof(der);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        const char *input = apr_pstrcat(pool, b64url(header_for(&es),
                                                     strlen(header_for(&es))),
                                        ".", b64url(c, strlen(c)), NULL);
        CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ec) == 1
              && EVP_DigestSign(ctx, der, &dlen, (const unsigned char *)input,
                                strlen(input)) == 1);
        EVP_MD_CTX_free(ctx);
        CHECK_STR("bad signature", verify(es_key, apr_pstrcat(pool, input,
                                          ".", b64url(der, dlen), NULL)));
    }
}

static void test_malformed(void)
{
    const char *c = "{\"sub\":\"zq9\"}";
    char *t = tok(&hs, c), *dot1 = strchr(t, '.'), *big, *h;
    const char *bad = "malformed token: bad base64url";
    int d1 = (int)(dot1 - t), n;

    CHECK(!verify(hs_key, t));
    /* base64 instead of base64url, padding, white space */
    CHECK_STR(bad, verify(hs_key, with_char(t, d1 + 1, '+')));
    CHECK_STR(bad, verify(hs_key, with_char(t, d1 + 1, '/')));
    CHECK_STR(bad, verify(hs_key, with_char(t, -1, '=')));
    CHECK_STR(bad, verify(hs_key, with_char(t, d1 + 2, ' ')));
    CHECK_STR(bad, verify(hs_key, apr_pstrcat(pool, t, "\n", NULL)));
    CHECK_STR(bad, verify(hs_key, apr_pstrcat(pool, " ", t, NULL)));
    CHECK_STR(bad, verify(hs_key, apr_pstrcat(pool, t, "==", NULL)));
    /* white space inside the JSON is JSON's business */
    CHECK(!verify(hs_key, token(&hs, " {\"alg\" : \"HS256\"}\n", c)));
    /* "e30" is {}; "e31" has the same bytes and a stray bit */
    h = b64url("{\"alg\":\"HS256\"}", 15);
    CHECK_STR("bad signature", verify(hs_key, apr_pstrcat(pool, h,
                                                          ".e30.AAAA", NULL)));
    CHECK_STR(bad, verify(hs_key, apr_pstrcat(pool, h, ".e31.AAAA", NULL)));
    CHECK_STR(bad, verify(hs_key, apr_pstrcat(pool, h, ".e30.AAAAA", NULL)));
    CHECK_STR("malformed token: header has no \"alg\" string",
              verify(hs_key, "e30.e30."));
    /* parts */
    CHECK_STR("malformed token: not three parts", verify(hs_key, ""));
    CHECK_STR("malformed token: not three parts", verify(hs_key, "..."));
    CHECK_STR("malformed token: not three parts",
              verify(hs_key, apr_pstrndup(pool, t, strrchr(t, '.') - t)));
    CHECK_STR("malformed token: not three parts",
              verify(hs_key, apr_pstrcat(pool, t, ".", NULL)));
    CHECK_STR("malformed token: not three parts",
              verify(hs_key, apr_pstrcat(pool, t, ".AAAA", NULL)));
    /* size: a token of exactly 8192 bytes passes, one more is refused */
    for (n = 6000, big = NULL; n < 6200 && !big; n++) {
        char *fill = apr_palloc(pool, (apr_size_t)n + 1);
        memset(fill, 'x', (apr_size_t)n);
        fill[n] = '\0';
        t = tok(&hs, apr_psprintf(pool, "{\"f\":\"%s\"}", fill));
        if (strlen(t) == SSE_JWT_MAX_TOKEN) big = t;
    }
    CHECK(big && !verify(hs_key, big));
    CHECK(big && !strcmp("token larger than 8192 bytes",
                         verify(hs_key, apr_pstrcat(pool, big, "A", NULL))));
}

static void test_header_and_claim_types(void)
{
    const char *mal = "malformed token: ";
    const char *cases[] = {
        "{\"exp\":\"1800000000\"}", "{\"exp\":1800000000.5}",
        "{\"exp\":1.8e9}", "{\"nbf\":true}", "{\"exp\":null}",
        "{\"exp\":99999999999999999999}",
        "{\"sub\":1}", "{\"sub\":\"zq9\\u0000admin\"}",
        "{\"sse_subscribe\":\"news\"}", "{\"sse_subscribe\":[1]}",
        "{\"sse_subscribe\":[\"a b\"]}", "{\"sse_subscribe\":[\"a*b\"]}",
        "{\"sse_subscribe\":[\"\"]}", "{\"sse_subscribe\":[\"**\"]}",
        "{\"sse_subscribe\":[\"zq9/x\"]}", "{\"sse_publish\":{\"a\":1}}",
        "{\"sse_publish\":[\"ok\",null]}", "{\"sse_publish\":[[\"a\"]]}",
        "[]", "\"zq9\"", "{\"sub\":\"zq9\"", "{\"sub\":\"a\",\"sub\":\"b\"}",
        "", NULL
    };
    char long_name[140];
    int i;

    for (i = 0; cases[i]; i++) {
        const char *why = verify(hs_key, tok(&hs, cases[i]));
        CHECK(why && !strncmp(why, mal, strlen(mal)));
        if (!why || strncmp(why, mal, strlen(mal))) {
            fprintf(stderr, "  claims %s: %s\n", cases[i], why ? why : "ok");
        }
    }
    /* a pattern is a channel name of at most 128 bytes, then maybe '*' */
    memset(long_name, 'a', 128);
    strcpy(long_name + 128, "*");
    CHECK(!verify(hs_key, tok(&hs, apr_psprintf(pool, "{\"sse_publish\":"
                                                "[\"%s\"]}", long_name))));
    strcpy(long_name + 128, "a");
    CHECK(verify(hs_key, tok(&hs, apr_psprintf(pool, "{\"sse_publish\":"
                                               "[\"%s\"]}", long_name))));
    CHECK(!verify(hs_key, tok(&hs, "{\"sse_subscribe\":[\"a-b_c.d:e@f~g\","
                              "\"x*\",\"*\"]}")));
    /* headers */
    CHECK_STR("crit header refused", verify(hs_key, token(&hs,
              "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", "{}")));
    CHECK_STR("malformed token: header is not a JSON object",
              verify(hs_key, token(&hs, "[\"HS256\"]", "{}")));
    CHECK_STR("malformed token: header has no \"alg\" string",
              verify(hs_key, token(&hs, "{\"typ\":\"JWT\"}", "{}")));
    CHECK_STR("malformed token: header has no \"alg\" string",
              verify(hs_key, token(&hs, "{\"alg\":256}", "{}")));
    CHECK_STR("malformed token: header: duplicate key in a JSON object",
              verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"alg\":\"none\"}",
                                   "{}")));
    CHECK_STR("malformed token: header: JSON nested too deeply",
              verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"x\":[[[[[[[[[["
                                   "[[[[[[]]]]]]]]]]]]]]]]}", "{}")));
    CHECK(!verify(hs_key, token(&hs, "{\"alg\":\"HS256\",\"x\":[[[[[[[[[["
                                "[[[[[]]]]]]]]]]]]]]]}", "{}")));
    /* the claims are read only once the signature holds */
    CHECK_STR("bad signature", verify(hs_key, tok(&hs_other, "[]")));
}

static void test_audience(void)
{
    const char *one = tok(&rs, "{\"aud\":\"sse\"}");
    const char *many = tok(&rs, "{\"aud\":[\"api\",\"sse\"]}");
    const char *none = tok(&rs, "{}");

    CHECK(!verify_aud(rs_key, one, "sse"));
    CHECK(!verify_aud(rs_key, many, "sse"));
    CHECK_STR("audience mismatch", verify_aud(rs_key, one, "ss"));
    CHECK_STR("audience mismatch", verify_aud(rs_key, many, "web"));
    CHECK_STR("audience mismatch (no \"aud\")",
              verify_aud(rs_key, none, "sse"));
    CHECK_STR("audience mismatch",
              verify_aud(rs_key, tok(&rs, "{\"aud\":[]}"), "sse"));
    CHECK(!strncmp("malformed token", verify_aud(rs_key, tok(&rs,
                   "{\"aud\":1}"), "sse"), 15));
    CHECK(!strncmp("malformed token", verify_aud(rs_key, tok(&rs,
                   "{\"aud\":[\"sse\",1]}"), "sse"), 15));
    /* without an audience configured, a token that names one is meant for
     * somebody else (RFC 7519 4.1.3); one without "aud" is fine */
    CHECK(!verify(rs_key, none));
    CHECK_STR("audience mismatch (the token names one, none is configured)",
              verify(rs_key, one));
    CHECK(verify(rs_key, tok(&rs, "{\"aud\":1}")) != NULL);
}

static void test_allows(void)
{
    apr_array_header_t *pats = apr_array_make(pool, 4, sizeof(char *));

    CHECK(!sse_jwt_allows(NULL, "news"));
    CHECK(!sse_jwt_allows(pats, "news"));
    APR_ARRAY_PUSH(pats, const char *) = "news";
    APR_ARRAY_PUSH(pats, const char *) = "prices.*";
    CHECK(sse_jwt_allows(pats, "news"));
    CHECK(!sse_jwt_allows(pats, "news2"));
    CHECK(!sse_jwt_allows(pats, "new"));
    CHECK(sse_jwt_allows(pats, "prices.eur"));
    CHECK(sse_jwt_allows(pats, "prices."));
    CHECK(!sse_jwt_allows(pats, "prices"));
    CHECK(!sse_jwt_allows(pats, "xprices.eur"));
    APR_ARRAY_PUSH(pats, const char *) = "*";
    CHECK(sse_jwt_allows(pats, "anything"));
}

/* Checks that loading file for alg fails, naming the file and saying
 * what (a part of the message). */
static void check_load_error(sse_jwt_alg alg, const char *file,
                             const char *what)
{
    sse_jwt_key *key = (sse_jwt_key *)1;
    const char *path = path_of(file);
    const char *why = sse_jwt_key_load(pool, alg, path, &key);
    CHECK(why && key == NULL);
    CHECK(why && !strncmp(why, path, strlen(path)) && strstr(why, what));
    if (!why || !strstr(why, what)) {
        fprintf(stderr, "  loading %s: %s\n", file, why ? why : "ok");
    }
}

static void test_key_load(void)
{
    EVP_PKEY *small = EVP_RSA_gen(1024);
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    EVP_PKEY *k256 = EVP_EC_gen("secp256k1");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    const char *garbage = "-----BEGIN PUBLIC KEY-----\nzq9zq9\n-----END "
                          "PUBLIC KEY-----\n";
    unsigned char buf[40];
    sse_jwt_key *key;
    apr_pool_t *sub;

    CHECK(small && p384 && k256 && ed);
    check_load_error(SSE_JWT_HS256, "missing", "cannot read it");
    check_load_error(SSE_JWT_RS256, "missing", "cannot read it");
    check_load_error(SSE_JWT_HS256, ".", "not a regular file");
    {
        char *huge = apr_pcalloc(pool, 70000);
        write_file("huge", huge, 70000);
        check_load_error(SSE_JWT_RS256, "huge", "larger than 64 KB");
    }
    /* secrets: 32 bytes after the trailing CR and LF are taken off */
    memset(buf, 'k', sizeof(buf));
    memcpy(buf + 31, "\r\n", 2);
    write_file("short", buf, 33);
    check_load_error(SSE_JWT_HS256, "short", "has 31 bytes");
    memcpy(buf + 31, "k\r\n\n", 4);
    write_file("crlf", buf, 35);
    CHECK(!sse_jwt_key_load(pool, SSE_JWT_HS256, path_of("crlf"), &key));
    CHECK(key && !verify(key, tok(&(signer){ "HS256", NULL, buf, 32 }, "{}")));
    check_load_error(SSE_JWT_HS256, "rsa.pem", "holds a PEM key");
    /* public keys */
    write_pem("small.pem", small, 0);
    check_load_error(SSE_JWT_RS256, "small.pem", "has 1024 bits");
    write_pem("p384.pem", p384, 0);
    check_load_error(SSE_JWT_ES256, "p384.pem", "curve secp384r1");
    write_pem("k256.pem", k256, 0);
    check_load_error(SSE_JWT_ES256, "k256.pem", "curve secp256k1");
    write_pem("ed.pem", ed, 0);
    check_load_error(SSE_JWT_ES256, "ed.pem", "type ED25519");
    check_load_error(SSE_JWT_RS256, "ed.pem", "type ED25519");
    check_load_error(SSE_JWT_RS256, "ec.pem", "type EC");
    check_load_error(SSE_JWT_ES256, "rsa.pem", "type RSA");
    write_pem("rsa.key", rsa, 1);
    check_load_error(SSE_JWT_RS256, "rsa.key", "holds a private key");
    write_file("garbage.pem", garbage, strlen(garbage));
    check_load_error(SSE_JWT_RS256, "garbage.pem", "no PEM public key");
    write_file("empty", "", 0);
    check_load_error(SSE_JWT_ES256, "empty", "no PEM public key");
    check_load_error(SSE_JWT_HS256, "empty", "has 0 bytes");
    check_load_error(0, "secret", "unknown algorithm");
    /* loading leaves nothing in OpenSSL's error queue (mod_ssl reads it) */
    CHECK(ERR_peek_error() == 0);
    verify(es_key, tok(&es, "{\"exp\":1}"));
    verify(es_key, "e30.e30.AAAA");
    CHECK(ERR_peek_error() == 0);
    /* a key lives as long as its pool */
    CHECK(apr_pool_create(&sub, pool) == APR_SUCCESS);
    CHECK(!sse_jwt_key_load(sub, SSE_JWT_ES256, path_of("ec.pem"), &key));
    CHECK(!verify(key, tok(&es, "{}")));
    apr_pool_destroy(sub);
    CHECK(sse_jwt_alg_parse("RS256") == SSE_JWT_RS256
          && sse_jwt_alg_parse("rs256") == 0 && sse_jwt_alg_parse("none") == 0);
    CHECK_STR("ES256", sse_jwt_alg_name(SSE_JWT_ES256));
    CHECK(sse_jwt_alg_name(0) == NULL);
    EVP_PKEY_free(small);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(k256);
    EVP_PKEY_free(ed);
}

static void remove_keys(void)
{
    const char *files[] = { "secret", "rsa.pem", "rsa.crt", "ec.pem", "short",
                            "crlf", "small.pem", "p384.pem", "k256.pem",
                            "ed.pem", "rsa.key", "garbage.pem", "empty", "huge",
                            NULL };
    int i;
    for (i = 0; files[i]; i++) {
        unlink(path_of(files[i]));
    }
    CHECK(rmdir(dir) == 0);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec_other);
}

void jwt_tests(apr_pool_t *p)
{
    pool = p;
    make_keys();
    test_valid();
    test_times();
    test_wrong_key_and_alg();
    test_tampering();
    test_malformed();
    test_header_and_claim_types();
    test_audience();
    test_allows();
    test_key_load();
    remove_keys();
}

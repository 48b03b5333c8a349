#include "cli/commands/tls_diagnosis.h"

#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace fleetcanary {
namespace cli {
namespace {

constexpr char kPassCert[] =
    "pass --cert/--key (env FLEETCANARY_CERT/FLEETCANARY_KEY) with a "
    "certificate its client CA signed, or use the controller's admin "
    "listener (--admin_listen), which asks for a bearer token only";

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// What the handshake saw; reached from OpenSSL callbacks through ex_data.
struct Observed {
  bool certificate_requested = false;
  std::string alert_received;
};

int ObservedIndex() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

Observed* ObservedOf(const SSL* ssl) {
  return static_cast<Observed*>(SSL_get_ex_data(ssl, ObservedIndex()));
}

// Called (for a client) only when the server sent a CertificateRequest.
int OnCertificateRequest(SSL* ssl, void*) {
  if (Observed* o = ObservedOf(ssl)) o->certificate_requested = true;
  return 1;
}

void OnInfo(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) == 0) return;
  if (Observed* o = ObservedOf(ssl)) {
    o->alert_received = SSL_alert_desc_string_long(ret);
  }
}

bool SplitHostPort(absl::string_view address, std::string* host,
                   std::string* port) {
  for (const char* prefix : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&address, prefix)) break;
  }
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  *host = std::string(address.substr(0, colon));
  *port = std::string(address.substr(colon + 1));
  if (absl::StartsWith(*host, "[") && absl::EndsWith(*host, "]")) {
    *host = host->substr(1, host->size() - 2);
  }
  return !host->empty() && !port->empty();
}

// A connected TCP socket with send/receive timeouts, or -1.
int Connect(const std::string& host, const std::string& port,
            absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return -1;
  int fd = -1;
  const timeval tv = absl::ToTimeval(timeout);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  return fd;
}

bool LoadCa(SSL_CTX* ctx, const std::string& pem) {
  if (pem.empty()) return SSL_CTX_set_default_verify_paths(ctx) == 1;
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  ERR_clear_error();
  return added > 0;
}

bool LoadIdentity(SSL_CTX* ctx, const std::string& cert_pem,
                  const std::string& key_pem) {
  std::unique_ptr<BIO, BioFree> cbio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  X509* cert = PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) return false;
  const bool cert_ok = SSL_CTX_use_certificate(ctx, cert) == 1;
  X509_free(cert);
  while (X509* extra =
             PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr)) {
    SSL_CTX_add_extra_chain_cert(ctx, extra);  // Takes ownership.
  }
  std::unique_ptr<BIO, BioFree> kbio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  EVP_PKEY* key =
      PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) return false;
  const bool key_ok = SSL_CTX_use_PrivateKey(ctx, key) == 1;
  EVP_PKEY_free(key);
  ERR_clear_error();
  return cert_ok && key_ok;
}

std::string LastSslError() {
  const unsigned long e = ERR_peek_last_error();
  if (e == 0) return "";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// A failed handshake: which side refused what.
std::string JudgeFailedHandshake(const TlsProbeOptions& options,
                                 const Observed& observed, bool have_cert) {
  const std::string error = absl::AsciiStrToLower(LastSslError());
  if (options.insecure) return "";
  if (absl::StrContains(error, "wrong version number") ||
      absl::StrContains(error, "packet length too long") ||
      absl::StrContains(error, "http request")) {
    return "the controller does not speak TLS on this port (a plaintext "
           "controller started with --insecure?): pass --insecure";
  }
  if (observed.certificate_requested && !have_cert) {
    return absl::StrCat("the controller asked for a client certificate: ",
                        kPassCert);
  }
  if (!observed.alert_received.empty()) {
    return absl::StrCat("the controller ended the TLS handshake (",
                        observed.alert_received, ")");
  }
  return "";
}

// Does canaryctl trust the controller, by CA and by name?
std::string JudgePeer(SSL* ssl, const std::string& name, bool ca_loaded,
                      const TlsProbeOptions& options) {
  X509* peer = SSL_get1_peer_certificate(ssl);
  const long verify = SSL_get_verify_result(ssl);
  std::string verdict;
  if (peer == nullptr) {
    verdict = "the controller presented no certificate";
  } else if (verify != X509_V_OK) {
    verdict = absl::StrCat(
        "canaryctl cannot verify the controller's certificate (",
        X509_verify_cert_error_string(verify), "): pass --ca with the CA ",
        ca_loaded && !options.ca_pem.empty() ? "that signed it"
                                             : "bundle that signed it");
  } else {
    const bool name_ok =
        X509_check_host(peer, name.c_str(), name.size(), 0, nullptr) == 1 ||
        X509_check_ip_asc(peer, name.c_str(), 0) == 1;
    if (!name_ok) {
      verdict =
          absl::StrCat("the controller's certificate is not valid for \"", name,
                       "\": dial a name it carries, or pass "
                       "--server-name with one");
    }
  }
  if (peer != nullptr) X509_free(peer);
  return verdict;
}

// With TLS 1.3 the controller judges our certificate (or its absence) after
// the handshake: a healthy controller speaks first (HTTP/2 SETTINGS); a
// refusal arrives as an alert.
std::string JudgeAfterHandshake(SSL* ssl, const Observed& observed,
                                bool have_cert) {
  char byte;
  const int n = SSL_read(ssl, &byte, 1);
  if (n > 0) return "";
  if (observed.certificate_requested && !have_cert) {
    return absl::StrCat("the controller asked for a client certificate: ",
                        kPassCert);
  }
  if (!observed.alert_received.empty()) {
    return absl::StrCat(
        "the controller refused canaryctl's client certificate (",
        observed.alert_received,
        "): it must be signed by the CA the controller trusts "
        "(--client_ca)");
  }
  return "";
}

// The verdict on a handshake that `connected` (SSL_connect's result) ended.
std::string Judge(SSL* ssl, int connected, const std::string& name,
                  bool ca_loaded, bool have_cert, const Observed& observed,
                  const TlsProbeOptions& options) {
  if (connected != 1) {
    return JudgeFailedHandshake(options, observed, have_cert);
  }
  if (options.insecure) {
    return "the controller speaks TLS on this port but canaryctl was told "
           "--insecure (plaintext): drop --insecure and pass --ca";
  }
  std::string verdict = JudgePeer(ssl, name, ca_loaded, options);
  if (verdict.empty()) verdict = JudgeAfterHandshake(ssl, observed, have_cert);
  return verdict;
}

}  // namespace

std::string DiagnoseTls(const TlsProbeOptions& options) {
  std::string host, port;
  if (!SplitHostPort(options.address, &host, &port)) return "";
  const int fd = Connect(host, port, options.timeout);
  if (fd < 0) return "";
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) {
    close(fd);
    return "";
  }
  // Verification is judged afterwards, so that one handshake shows both what
  // the controller asked for and what canaryctl thinks of its certificate.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  const bool ca_loaded = LoadCa(ctx.get(), options.ca_pem);
  const bool have_cert = !options.cert_pem.empty() && !options.key_pem.empty();
  if (have_cert &&
      !LoadIdentity(ctx.get(), options.cert_pem, options.key_pem)) {
    close(fd);
    return "--cert/--key do not hold a PEM certificate and its private key";
  }
  SSL_CTX_set_cert_cb(ctx.get(), &OnCertificateRequest, nullptr);
  SSL_CTX_set_info_callback(ctx.get(), &OnInfo);
  SSL_CTX_set_alpn_protos(ctx.get(),
                          reinterpret_cast<const unsigned char*>("\x02h2"), 3);
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  Observed observed;
  SSL_set_ex_data(ssl.get(), ObservedIndex(), &observed);
  const std::string name =
      options.server_name.empty() ? host : options.server_name;
  SSL_set_tlsext_host_name(ssl.get(), name.c_str());
  SSL_set_fd(ssl.get(), fd);
  ERR_clear_error();
  const int connected = SSL_connect(ssl.get());
  const std::string verdict = Judge(ssl.get(), connected, name, ca_loaded,
                                    have_cert, observed, options);
  SSL_shutdown(ssl.get());
  close(fd);
  ERR_clear_error();
  return verdict;
}

}  // namespace cli
}  // namespace fleetcanary

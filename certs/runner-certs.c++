// runner-certs: makes the CA, server and client certificates for runnerd and runctl.
//
//   runner-certs ca     --out-dir DIR [--name CN] [--days N] [--force]
//   runner-certs server --ca-dir DIR --out-dir DIR [--dns NAME]... [--ip ADDR]... [--days N]
//   runner-certs client --ca-dir DIR --out-dir DIR --user NAME [--days N] [--force]
//
// Exit status: 0 on success, 2 for a usage error, 1 for any other failure; errors are one line
// on stderr.

#include <kj/debug.h>
#include <kj/main.h>
#include <kj/vector.h>
#include <unistd.h>

#include "certs/authority.h"
#include "certs/credential-files.h"

namespace runner {
namespace certs {
namespace {

constexpr int EXIT_FAILED = 1;
constexpr int EXIT_USAGE = 2;

// kj::MainBuilder reports usage errors through exitError(); this context gives them their own
// exit status (2), which TopLevelProcessContext cannot (it always exits 1 after an error).
class CertsProcessContext final : public kj::ProcessContext {
 public:
  explicit CertsProcessContext(kj::StringPtr programName) : inner(programName) {}

  kj::StringPtr getProgramName() override { return inner.getProgramName(); }
  [[noreturn]] void exit() override { inner.exit(); }
  void warning(kj::StringPtr message) override { inner.warning(message); }
  void error(kj::StringPtr message) override { inner.error(message); }
  [[noreturn]] void exitError(kj::StringPtr message) override { exitWith(EXIT_USAGE, message); }
  [[noreturn]] void exitInfo(kj::StringPtr message) override { inner.exitInfo(message); }
  void increaseLoggingVerbosity() override { inner.increaseLoggingVerbosity(); }

  // Prints "runner-certs: MESSAGE" on stderr and exits with `status`.
  [[noreturn]] void exitWith(int status, kj::StringPtr message) {
    auto line = kj::str(message, '\n');
    ssize_t ignored = write(STDERR_FILENO, line.begin(), line.size());
    (void)ignored;
    _exit(status);
  }

 private:
  kj::TopLevelProcessContext inner;
};

// Runs `body` and returns what it returns; any exception it throws becomes
// "runner-certs: DESCRIPTION" on stderr and exit status 1.
template <typename Body>
kj::String runOrFail(CertsProcessContext& context, Body&& body) {
  kj::String result;
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&]() { result = body(); })) {
    context.exitWith(EXIT_FAILED, kj::str("runner-certs: ", exception->getDescription()));
  }
  return result;
}

// Turns a library check (which throws) into a MainBuilder usage error.
template <typename Check>
kj::MainBuilder::Validity usageCheck(Check&& check) {
  KJ_IF_MAYBE (exception, kj::runCatchingExceptions(kj::fwd<Check>(check))) {
    return kj::str(exception->getDescription());
  }
  return true;
}

class RunnerCerts {
 public:
  explicit RunnerCerts(CertsProcessContext& context) : context(context) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, "runner-certs 0.1",
                           "Makes the certificates that runnerd and runctl use for mutual TLS: "
                           "one CA, a server certificate for runnerd, and a client certificate "
                           "per user (the certificate's common name is the user's identity). "
                           "Keys are ECDSA P-256 and are written with mode 0600.")
        .addSubCommand("ca", KJ_BIND_METHOD(*this, getCaMain), "create a new certificate authority")
        .addSubCommand("server", KJ_BIND_METHOD(*this, getServerMain),
                       "issue a certificate for runnerd")
        .addSubCommand("client", KJ_BIND_METHOD(*this, getClientMain),
                       "issue a certificate for a user of runctl")
        .addSubCommand("revoke", KJ_BIND_METHOD(*this, getRevokeMain),
                       "revoke a certificate: add it to the CA's revocation list")
        .addSubCommand("crl", KJ_BIND_METHOD(*this, getCrlMain),
                       "make or renew the CA's revocation list (for runnerd --tls-crl)")
        .build();
  }

 private:
  CertsProcessContext& context;

  kj::StringPtr outDir;
  kj::StringPtr caDir;
  kj::StringPtr caName = DEFAULT_CA_NAME;
  kj::Maybe<unsigned> days;
  kj::Vector<kj::StringPtr> dnsNames;
  kj::Vector<kj::StringPtr> ipAddresses;
  kj::StringPtr user;
  kj::StringPtr certPath;
  bool force = false;

  kj::MainBuilder& addOutDir(kj::MainBuilder& builder) {
    return builder.addOptionWithArg({"out-dir"}, KJ_BIND_METHOD(*this, setOutDir), "<dir>",
                                    "Write the files into <dir> (which must exist). Required.");
  }
  kj::MainBuilder& addCaDir(kj::MainBuilder& builder) {
    return builder.addOptionWithArg(
        {"ca-dir"}, KJ_BIND_METHOD(*this, setCaDir), "<dir>",
        "Sign with the CA in <dir> (ca.pem and ca-key.pem, as written by 'runner-certs ca'). "
        "Required.");
  }
  // `daysHelp` must be a literal: MainBuilder keeps the pointer.
  kj::MainBuilder& addCommon(kj::MainBuilder& builder, kj::StringPtr daysHelp) {
    return builder.addOptionWithArg({"days"}, KJ_BIND_METHOD(*this, setDays), "<n>", daysHelp)
        .addOption({"force"}, KJ_BIND_METHOD(*this, setForce),
                   "Overwrite files that already exist.");
  }

  kj::MainFunc getCaMain() {
    kj::MainBuilder builder(context, "runner-certs ca",
                            "Creates a new self-signed certificate authority: <out-dir>/ca.pem "
                            "and <out-dir>/ca-key.pem. Give ca.pem to runnerd (--tls-ca) and to "
                            "every runctl (--ca); keep ca-key.pem to yourself.");
    addOutDir(builder);
    builder.addOptionWithArg({"name"}, KJ_BIND_METHOD(*this, setCaName), "<cn>",
                             "The CA's common name (default \"runner CA\").");
    addCommon(builder, "Valid for <n> days from now (default 1825).");
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, createCa)).build();
  }

  kj::MainFunc getServerMain() {
    kj::MainBuilder builder(
        context, "runner-certs server",
        "Issues runnerd's certificate: <out-dir>/server.pem and <out-dir>/server-key.pem. "
        "Clients check the name they connect to against the DNS names and IP addresses given "
        "here; without --dns and --ip they are localhost, 127.0.0.1 and ::1.");
    addCaDir(builder);
    addOutDir(builder);
    builder
        .addOptionWithArg({"dns"}, KJ_BIND_METHOD(*this, addDnsName), "<name>",
                          "Add a DNS name the server is reached by. Repeatable.")
        .addOptionWithArg({"ip"}, KJ_BIND_METHOD(*this, addIpAddress), "<addr>",
                          "Add an IPv4 or IPv6 address the server is reached by. Repeatable.");
    addCommon(builder, "Valid for <n> days from now (default 365).");
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, issueServer)).build();
  }

  kj::MainFunc getClientMain() {
    kj::MainBuilder builder(
        context, "runner-certs client",
        "Issues a client certificate for a user: <out-dir>/<user>.pem and "
        "<out-dir>/<user>-key.pem. runnerd knows the caller by the certificate's common name.");
    addCaDir(builder);
    addOutDir(builder);
    builder.addOptionWithArg({"user"}, KJ_BIND_METHOD(*this, setUser), "<name>",
                             "The user's name (becomes the common name). Required.");
    addCommon(builder, "Valid for <n> days from now (default 365).");
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, issueClient)).build();
  }

  kj::MainFunc getRevokeMain() {
    kj::MainBuilder builder(
        context, "runner-certs revoke",
        "Adds a certificate the CA issued to the CA's certificate revocation list, "
        "<ca-dir>/crl.pem (made when missing, renewed otherwise). runnerd started with "
        "--tls-crl <ca-dir>/crl.pem refuses the certificate from its next reload (SIGHUP) or "
        "start; connections already open keep going.");
    addCaDir(builder);
    builder.addOptionWithArg({"cert"}, KJ_BIND_METHOD(*this, setCert), "<file>",
                             "The certificate to revoke (PEM). Required.");
    builder.addOptionWithArg({"days"}, KJ_BIND_METHOD(*this, setDays), "<n>",
                             "The list is valid for <n> days from now (default 1825); past that, "
                             "runnerd refuses every client until it is renewed (revoke again).");
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, revoke)).build();
  }

  kj::MainFunc getCrlMain() {
    kj::MainBuilder builder(
        context, "runner-certs crl",
        "Writes the CA's certificate revocation list, <ca-dir>/crl.pem: empty when there is none "
        "yet, otherwise renewed with what it lists. Give it to runnerd (--tls-crl); runner-certs "
        "revoke adds certificates to it.");
    addCaDir(builder);
    builder.addOptionWithArg({"days"}, KJ_BIND_METHOD(*this, setDays), "<n>",
                             "The list is valid for <n> days from now (default 1825); past that, "
                             "runnerd refuses every client until it is renewed.");
    return builder.callAfterParsing(KJ_BIND_METHOD(*this, renewCrl)).build();
  }

  kj::MainBuilder::Validity setCert(kj::StringPtr path) {
    if (path.size() == 0) return kj::str("--cert must not be empty");
    certPath = path;
    return true;
  }

  kj::MainBuilder::Validity setOutDir(kj::StringPtr dir) {
    if (dir.size() == 0) return kj::str("--out-dir must not be empty");
    outDir = dir;
    return true;
  }
  kj::MainBuilder::Validity setCaDir(kj::StringPtr dir) {
    if (dir.size() == 0) return kj::str("--ca-dir must not be empty");
    caDir = dir;
    return true;
  }
  kj::MainBuilder::Validity setCaName(kj::StringPtr name) {
    caName = name;
    return usageCheck([&]() { checkCommonName("CA name", name); });
  }
  kj::MainBuilder::Validity setDays(kj::StringPtr text) {
    bool digits = text.size() > 0 && text.size() <= 6;
    for (char c : text) digits = digits && c >= '0' && c <= '9';
    if (!digits) return kj::str("not a number of days: ", text);
    unsigned value = text.parseAs<unsigned>();
    days = value;
    return usageCheck([&]() { Validity::forDays(value); });
  }
  kj::MainBuilder::Validity addDnsName(kj::StringPtr name) {
    dnsNames.add(name);
    return usageCheck([&]() { checkDnsName(name); });
  }
  kj::MainBuilder::Validity addIpAddress(kj::StringPtr address) {
    ipAddresses.add(address);
    return usageCheck([&]() { checkIpAddress(address); });
  }
  kj::MainBuilder::Validity setUser(kj::StringPtr name) {
    user = name;
    return usageCheck([&]() { checkUserName(name); });
  }
  kj::MainBuilder::Validity setForce() {
    force = true;
    return true;
  }

  Validity validity(unsigned defaultDays) { return Validity::forDays(days.orDefault(defaultDays)); }

  kj::MainBuilder::Validity createCa() {
    if (outDir.size() == 0) return kj::str("missing --out-dir");
    context.exitInfo(runOrFail(context, [&]() {
      auto ca = Authority::create(caName, validity(DEFAULT_CA_DAYS));
      writeCredentials(outDir, "ca", {kj::str(ca.certPem()), kj::str(ca.keyPem())}, force);
      return kj::str("wrote ", outDir, '/', CA_CERT_FILE, " and ", outDir, '/', CA_KEY_FILE);
    }));
  }

  kj::MainBuilder::Validity issueServer() {
    if (caDir.size() == 0) return kj::str("missing --ca-dir");
    if (outDir.size() == 0) return kj::str("missing --out-dir");
    context.exitInfo(runOrFail(context, [&]() {
      kj::StringPtr defaultDns[] = {"localhost"};
      kj::StringPtr defaultIps[] = {"127.0.0.1", "::1"};
      bool defaults = dnsNames.empty() && ipAddresses.empty();
      ServerNames names;
      names.dnsNames = defaults ? kj::arrayPtr(defaultDns, 1) : dnsNames.asPtr();
      names.ipAddresses = defaults ? kj::arrayPtr(defaultIps, 2) : ipAddresses.asPtr();

      auto ca = readAuthority(caDir);
      writeCredentials(outDir, "server", ca.issueServer(names, validity(DEFAULT_CERT_DAYS)), force);
      return kj::str("wrote ", outDir, '/', SERVER_CERT_FILE, " and ", outDir, '/',
                     SERVER_KEY_FILE);
    }));
  }

  // Writes the CA's new CRL (with `revoked` added, when given) over the current one.
  Authority::Revocation writeCrl(kj::Maybe<kj::StringPtr> revoked) {
    auto ca = readAuthority(caDir);
    auto crlPath = kj::str(caDir, '/', CRL_FILE);
    kj::Maybe<kj::String> current;
    if (access(crlPath.cStr(), F_OK) == 0) current = readFile(crlPath);
    auto revocation =
        ca.issueCrl(revoked, current.map([](kj::String& s) -> kj::StringPtr { return s; }),
                    validity(DEFAULT_CA_DAYS));
    writeFile(crlPath, revocation.crlPem, 0644, true);
    return revocation;
  }

  kj::MainBuilder::Validity revoke() {
    if (caDir.size() == 0) return kj::str("missing --ca-dir");
    if (certPath.size() == 0) return kj::str("missing --cert");
    context.exitInfo(runOrFail(context, [&]() {
      auto revocation = writeCrl(kj::StringPtr(readFile(certPath)));
      return kj::str(revocation.alreadyListed ? "already revoked: " : "revoked ", certPath,
                     " (CN=", revocation.commonName, ", serial ", revocation.serial, "); ", caDir,
                     '/', CRL_FILE, " lists ", revocation.listed,
                     revocation.listed == 1 ? " certificate" : " certificates",
                     "; reload runnerd (SIGHUP) to refuse it");
    }));
  }

  kj::MainBuilder::Validity renewCrl() {
    if (caDir.size() == 0) return kj::str("missing --ca-dir");
    context.exitInfo(runOrFail(context, [&]() {
      auto revocation = writeCrl(nullptr);
      return kj::str("wrote ", caDir, '/', CRL_FILE, ", which lists ", revocation.listed,
                     revocation.listed == 1 ? " certificate" : " certificates");
    }));
  }

  kj::MainBuilder::Validity issueClient() {
    if (caDir.size() == 0) return kj::str("missing --ca-dir");
    if (outDir.size() == 0) return kj::str("missing --out-dir");
    if (user.size() == 0) return kj::str("missing --user");
    context.exitInfo(runOrFail(context, [&]() {
      auto ca = readAuthority(caDir);
      writeCredentials(outDir, user, ca.issueClient(user, validity(DEFAULT_CERT_DAYS)), force);
      return kj::str("wrote ", outDir, '/', user, ".pem and ", outDir, '/', user, "-key.pem");
    }));
  }
};

}  // namespace
}  // namespace certs
}  // namespace runner

int main(int argc, char* argv[]) {
  runner::certs::CertsProcessContext context(argv[0]);
  runner::certs::RunnerCerts mainObject(context);
  return kj::runMainAndExit(context, mainObject.getMain(), argc, argv);
}

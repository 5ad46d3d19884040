// Names and text that one user controls and others read, end to end with a real runnerd and real
// runctl processes: a client certificate whose subject could name two users (or carries control
// characters) is refused in the handshake, and another user's job is shown escaped by `runctl
// list` and `runctl status` while its output stays byte for byte.

#include <gtest/gtest.h>
#include <kj/debug.h>
#include <openssl/asn1.h>
#include <openssl/objects.h>

#include <initializer_list>
#include <string>

#include "certs/authority.h"
#include "certs/credential-files.h"
#include "tests/runctl-process.h"
#include "tests/runnerd-fixture.h"
#include "tls/test-certificates.h"

namespace runner {
namespace {

using testing::RunctlOptions;
using testing::RunctlResult;
using testing::RunnerdFixture;

// One runnerd for the whole suite (its users: alice, bob and the admin "admin").
class HostileText : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::cannotRunServer() != nullptr) return;
    server = kj::heap<RunnerdFixture>();
  }

  static void TearDownTestSuite() { server = nullptr; }

  void SetUp() override {
    KJ_IF_MAYBE (reason, testing::cannotRunServer()) {
      GTEST_SKIP() << reason->cStr();
    }
  }

  static RunctlResult runctl(kj::ArrayPtr<const kj::StringPtr> args, kj::StringPtr user) {
    RunctlOptions options;
    options.user = user;
    return testing::runctl(*server, args, options);
  }

  // Writes a client certificate with `subject`, signed by the fixture's CA, as user `name`'s.
  static void issueWithSubject(kj::StringPtr name, std::initializer_list<tls::NameEntry> subject) {
    auto ca = certs::readAuthority(server->dir());
    auto issued = tls::issueClientWithSubject(ca, kj::arrayPtr(subject.begin(), subject.size()));
    certs::writeCredentials(server->dir(), name, issued.pem, true);
  }

  static kj::Own<RunnerdFixture> server;
};

kj::Own<RunnerdFixture> HostileText::server;

tls::NameEntry cn(kj::ArrayPtr<const char> value) {
  return {NID_commonName, V_ASN1_UTF8STRING, value};
}

std::string trimmed(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// Whether a terminal would act on anything in `text` but the newlines that end its lines.
bool drivesTheTerminal(const std::string& text) {
  for (size_t i = 0; i < text.size(); i++) {
    auto byte = static_cast<uint8_t>(text[i]);
    if (byte == '\n') continue;
    if (byte < 0x20 || byte == 0x7f) return true;
    if (byte == 0xc2 && i + 1 < text.size() && static_cast<uint8_t>(text[i + 1]) <= 0x9f) {
      return true;
    }
  }
  return false;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(HostileText, RunnerdRefusesACertificateWithTwoCommonNamesDuringTheHandshake) {
  // kj-tls alone reads the first CN: this certificate would have been the admin's.
  issueWithSubject("admin-and-bob", {cn(tls::bytes("admin")), cn(tls::bytes("bob"))});
  issueWithSubject("bob-escape", {cn(tls::bytes("bob\x1b[2J\x1b[31m"))});

  for (kj::StringPtr user : {"admin-and-bob", "bob-escape"}) {
    SCOPED_TRACE(user.cStr());
    auto client = server->connect(user);
    auto request = client->manager.whoamiRequest();
    KJ_IF_MAYBE (exception,
                 kj::runCatchingExceptions([&]() { request.send().wait(server->io.waitScope); })) {
      EXPECT_TRUE(contains(exception->getDescription().cStr(), "bad certificate"))
          << exception->getDescription().cStr();
    } else {
      ADD_FAILURE() << "whoami answered a certificate that names no user";
    }
  }
  server->waitForLog("failed: client certificate has more than one common name");
  server->waitForLog("failed: client certificate's common name contains a control character");
  std::string log = server->serverLog().cStr();
  EXPECT_FALSE(contains(log, "\x1b[2J")) << log;

  // runctl refuses to present such a certificate at all, with one clear line.
  auto refused = runctl({"list"}, "admin-and-bob");
  EXPECT_EQ(refused.status, 1);
  EXPECT_TRUE(contains(refused.err,
                       "names no user: client certificate has more than one common "
                       "name: \"admin\", \"bob\"\n"))
      << refused.err;

  // The CA's real users are served as before.
  auto served = runctl({"list"}, "alice");
  EXPECT_EQ(served.status, 0) << served.err;
}

TEST_F(HostileText, AnotherUsersJobIsShownEscapedAndItsOutputStaysRaw) {
  // bob's job: its arguments would clear alice's screen and forge a row of the table.
  std::string forged = "\x1b[2J\x1b[H\r00000000-0000-0000-0000-000000000000  admin  exited   0";
  auto started = runctl({"start", "--", "printf", "%s\\n", forged.c_str(), "\u009b31m"}, "bob");
  ASSERT_EQ(started.status, 0) << started.err;
  auto id = trimmed(started.out);
  ASSERT_EQ(id.size(), 36u) << id;
  auto waited = runctl({"wait", id.c_str()}, "bob");
  EXPECT_EQ(waited.status, 0) << waited.err;

  auto shownCommand = std::string("printf '%s\\n' $'\\e[2J\\e[H\\r00000000-0000-0000-0000-") +
                      "000000000000  admin  exited   0' $'\\u009b31m'";
  auto list = runctl({"list", "--all"}, "alice");
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_FALSE(drivesTheTerminal(list.out)) << list.out;
  bool found = false;
  size_t start = 0;
  while (start < list.out.size()) {
    size_t end = list.out.find('\n', start);
    auto line = list.out.substr(start, end - start);
    // Every line is the header or a job's row: none was forged.
    EXPECT_TRUE(line.rfind("ID ", 0) == 0 || (line.size() > 36 && line[36] == ' ')) << line;
    if (line.rfind(id, 0) == 0) {
      found = true;
      EXPECT_TRUE(contains(line, "  bob  ")) << line;
      EXPECT_TRUE(
          line.size() >= shownCommand.size() &&
          line.compare(line.size() - shownCommand.size(), shownCommand.size(), shownCommand) == 0)
          << line;
    }
    start = end + 1;
  }
  EXPECT_TRUE(found) << list.out;

  auto status = runctl({"status", id.c_str()}, "alice");
  ASSERT_EQ(status.status, 0) << status.err;
  EXPECT_FALSE(drivesTheTerminal(status.out)) << status.out;
  EXPECT_TRUE(contains(status.out, "Command:      " + shownCommand + "\n")) << status.out;

  // JSON is for programs: the fields as they are, in JSON's own escapes.
  auto json = runctl({"status", "--json", id.c_str()}, "alice");
  EXPECT_TRUE(contains(json.out, "\\u001b[2J\\u001b[H\\r00000000")) << json.out;

  // The job's own output is bytes, and its owner gets them as the job wrote them.
  auto logs = runctl({"logs", id.c_str()}, "bob");
  ASSERT_EQ(logs.status, 0) << logs.err;
  EXPECT_EQ(logs.out, forged + "\n\u009b31m\n");
}

TEST_F(HostileText, TheErrorOfAJobThatCannotStartIsEscaped) {
  auto result = runctl({"start", "--", "no-such-\x1b[31mcommand\r"}, "bob");
  EXPECT_EQ(result.status, 1);
  EXPECT_FALSE(drivesTheTerminal(result.err)) << result.err;
  EXPECT_TRUE(result.err.find('\n') == result.err.size() - 1) << result.err;
  EXPECT_TRUE(contains(result.err, "could not start: ")) << result.err;
  EXPECT_TRUE(contains(result.err, "no-such-\\e[31mcommand\\r")) << result.err;
}

}  // namespace
}  // namespace runner

#pragma once
// Certificates and keys on disk: keys are written with mode 0600, certificates with 0644, and
// nothing is overwritten unless the caller says so.

#include <kj/string.h>
#include <sys/types.h>

#include "certs/authority.h"

namespace runner {
namespace certs {

// The file names runner-certs uses inside its output directories.
constexpr const char* CA_CERT_FILE = "ca.pem";
constexpr const char* CA_KEY_FILE = "ca-key.pem";
constexpr const char* SERVER_CERT_FILE = "server.pem";
constexpr const char* SERVER_KEY_FILE = "server-key.pem";
// The CA's certificate revocation list, which `runner-certs revoke` keeps beside the CA's files.
constexpr const char* CRL_FILE = "crl.pem";

// Writes `credentials` as DIR/BASE.pem (0644) and DIR/BASE-key.pem (0600). Refuses, before
// writing anything, when either file exists and `overwrite` is false. With `overwrite`, existing
// files are replaced by new ones (so the key never inherits a looser mode).
void writeCredentials(kj::StringPtr dir, kj::StringPtr baseName, const Credentials& credentials,
                      bool overwrite);

// Creates `path` holding `text`, with exactly `mode` (whatever the umask). Refuses to replace an
// existing file unless `overwrite`. Never follows a symlink at `path`.
void writeFile(kj::StringPtr path, kj::StringPtr text, mode_t mode, bool overwrite);

// Reads a whole (small) text file; the error names the file.
kj::String readFile(kj::StringPtr path);

// Loads the CA that `runner-certs ca` wrote into `dir` (CA_CERT_FILE and CA_KEY_FILE).
Authority readAuthority(kj::StringPtr dir);

}  // namespace certs
}  // namespace runner

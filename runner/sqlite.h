#pragma once
// A small RAII layer over the SQLite C API, as the job store uses it: one connection, and
// prepared statements kept for the connection's life and reused. Failures throw one-line
// errors that name the database file and carry SQLite's explanation.

#include <kj/common.h>
#include <kj/string.h>
#include <stdint.h>

struct sqlite3;
struct sqlite3_stmt;

namespace runner::sqlite {

// The connection. Owns the sqlite3 handle and remembers the path for error messages.
class Database {
 public:
  // Opens (creating) the database file at `path`.
  explicit Database(kj::StringPtr path);
  ~Database() noexcept(false);
  KJ_DISALLOW_COPY(Database);

  sqlite3* get() { return db; }
  kj::StringPtr getPath() { return path; }

  // Throws for a failed sqlite call on `statement`, with sqlite's explanation.
  [[noreturn]] void fail(kj::StringPtr statement);

  // Runs one or more statements that return no rows.
  void execute(kj::StringPtr statement);

 private:
  kj::String path;
  sqlite3* db = nullptr;
};

// A prepared statement, kept for the life of its Database and reused. Parameters are numbered
// from 1 and bound without copying (SQLITE_STATIC): the bound values must stay alive until
// the statement has run, which they do since every use binds, runs and resets in one scope.
class Statement {
 public:
  Statement(Database& db, kj::StringPtr sql);
  ~Statement() noexcept(false);
  KJ_DISALLOW_COPY(Statement);

  void bind(int index, int64_t value);
  void bind(int index, kj::StringPtr value);
  void bindBlob(int index, kj::ArrayPtr<const char> value);
  void bindNull(int index);

  // Steps once: true when a row is ready, false when the statement is done.
  bool step();

  // Runs a statement that returns no rows, then resets it.
  void run();

  // Makes the statement ready to be bound and run again, and ends its read of the database.
  void reset();

  bool isNull(int column);
  int64_t getInt(int column);
  kj::String getText(int column);
  kj::ArrayPtr<const char> getBlob(int column);

 private:
  Database& db;
  sqlite3_stmt* stmt = nullptr;

  void check(int rc);
};

}  // namespace runner::sqlite

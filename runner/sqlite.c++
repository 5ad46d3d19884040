#include "runner/sqlite.h"

#include <kj/debug.h>
#include <sqlite3.h>

namespace runner::sqlite {

Database::Database(kj::StringPtr path) : path(kj::str(path)) {
  int rc =
      sqlite3_open_v2(this->path.cStr(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    kj::String reason = kj::str(db == nullptr ? sqlite3_errstr(rc) : sqlite3_errmsg(db));
    sqlite3_close_v2(db);
    db = nullptr;
    KJ_FAIL_REQUIRE("cannot open job store", path, reason);
  }
}

Database::~Database() noexcept(false) {
  sqlite3_close_v2(db);
}

void Database::fail(kj::StringPtr statement) {
  kj::StringPtr reason = sqlite3_errmsg(db);
  KJ_FAIL_ASSERT("job store query failed", path, reason, statement);
}

void Database::execute(kj::StringPtr statement) {
  if (sqlite3_exec(db, statement.cStr(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    fail(statement);
  }
}

Statement::Statement(Database& db, kj::StringPtr sql) : db(db) {
  if (sqlite3_prepare_v3(db.get(), sql.cStr(), sql.size() + 1, SQLITE_PREPARE_PERSISTENT, &stmt,
                         nullptr) != SQLITE_OK) {
    db.fail(sql);
  }
}

Statement::~Statement() noexcept(false) {
  sqlite3_finalize(stmt);
}

void Statement::bind(int index, int64_t value) {
  check(sqlite3_bind_int64(stmt, index, value));
}

void Statement::bind(int index, kj::StringPtr value) {
  check(sqlite3_bind_text(stmt, index, value.begin(), value.size(), SQLITE_STATIC));
}

void Statement::bindBlob(int index, kj::ArrayPtr<const char> value) {
  // A non-null pointer, so that an empty array is an empty blob rather than NULL.
  static const char EMPTY = 0;
  check(sqlite3_bind_blob(stmt, index, value.size() == 0 ? &EMPTY : value.begin(), value.size(),
                          SQLITE_STATIC));
}

bool Statement::step() {
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db.fail(sqlite3_sql(stmt));
}

void Statement::run() {
  KJ_DEFER(reset());
  KJ_ASSERT(!step(), "statement returned rows", sqlite3_sql(stmt));
}

void Statement::reset() {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
}

void Statement::bindNull(int index) {
  check(sqlite3_bind_null(stmt, index));
}

bool Statement::isNull(int column) {
  return sqlite3_column_type(stmt, column) == SQLITE_NULL;
}

int64_t Statement::getInt(int column) {
  return sqlite3_column_int64(stmt, column);
}

kj::String Statement::getText(int column) {
  auto text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  size_t size = sqlite3_column_bytes(stmt, column);
  return text == nullptr ? kj::str() : kj::heapString(text, size);
}

kj::ArrayPtr<const char> Statement::getBlob(int column) {
  auto blob = reinterpret_cast<const char*>(sqlite3_column_blob(stmt, column));
  size_t size = sqlite3_column_bytes(stmt, column);
  return blob == nullptr ? nullptr : kj::arrayPtr(blob, size);
}

void Statement::check(int rc) {
  if (rc != SQLITE_OK) db.fail(sqlite3_sql(stmt));
}

}  // namespace runner::sqlite

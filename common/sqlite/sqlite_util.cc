#include "common/sqlite/sqlite_util.h"

#include "absl/strings/str_cat.h"
#include "common/status/status_util.h"

namespace fleetcanary {

absl::StatusOr<sqlite3*> OpenSqlite(const std::string& path,
                                    absl::string_view what) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return absl::UnavailableError(
        absl::StrCat("opening ", what, " ", path, ": ", msg));
  }
  return db;
}

absl::Status SqliteError(sqlite3* db, absl::string_view prefix,
                         absl::string_view what) {
  return absl::InternalError(
      absl::StrCat(prefix, ": ", what, ": ", sqlite3_errmsg(db)));
}

absl::Status SqliteExec(sqlite3* db, const std::string& sql,
                        absl::string_view prefix) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat(prefix, ": ", msg));
  }
  return absl::OkStatus();
}

absl::Status MigrateSqlite(sqlite3* db,
                           absl::Span<const char* const> migrations,
                           absl::string_view what, absl::string_view prefix) {
  const int latest = static_cast<int>(migrations.size());
  int version = 0;
  {
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, nullptr);
    const int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW)
      return SqliteError(db, prefix, "reading user_version");
  }
  if (version > latest) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " schema version ", version,
                     " is newer than this binary's ", latest));
  }
  for (int v = version; v < latest; ++v) {
    FC_RETURN_IF_ERROR(SqliteExec(db, "BEGIN IMMEDIATE", prefix));
    absl::Status s = SqliteExec(db, migrations[v], prefix);
    if (s.ok()) {
      s = SqliteExec(db, absl::StrCat("PRAGMA user_version=", v + 1), prefix);
    }
    if (!s.ok()) {
      SqliteExec(db, "ROLLBACK", prefix).IgnoreError();
      return Annotate(s,
                      absl::StrCat("migrating ", what, " to version ", v + 1));
    }
    FC_RETURN_IF_ERROR(SqliteExec(db, "COMMIT", prefix));
  }
  return absl::OkStatus();
}

}  // namespace fleetcanary

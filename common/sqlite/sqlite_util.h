// What every SQLite database of fleetcanary (the agent's outbox, the
// controller's SQLite store) does the same way: opening the file, running
// plain SQL, reporting the connection's errors, and migrating the schema.
//
// Thread-safety: the functions hold no state of their own; a connection is
// used by one thread at a time (it is opened SQLITE_OPEN_NOMUTEX), so the
// caller serializes every call on the same `db`.
#ifndef FLEETCANARY_COMMON_SQLITE_SQLITE_UTIL_H_
#define FLEETCANARY_COMMON_SQLITE_SQLITE_UTIL_H_

#include <sqlite3.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fleetcanary {

// Opens the database at `path` read-write, creating it when missing. The
// caller owns the connection (sqlite3_close_v2). On failure returns
// UNAVAILABLE "opening <what> <path>: <reason>" and leaves nothing open.
absl::StatusOr<sqlite3*> OpenSqlite(const std::string& path,
                                    absl::string_view what);

// INTERNAL "<prefix>: <what>: <the connection's last error message>".
absl::Status SqliteError(sqlite3* db, absl::string_view prefix,
                         absl::string_view what);

// Runs `sql`, one statement or several, ignoring result rows. On failure
// returns INTERNAL "<prefix>: <SQLite's message>".
absl::Status SqliteExec(sqlite3* db, const std::string& sql,
                        absl::string_view prefix);

// Brings the schema up to date: migration i moves PRAGMA user_version from i
// to i+1, each in its own IMMEDIATE transaction (rolled back on failure).
// `what` names the database in errors ("outbox", "store"), `prefix` starts
// SQLite's own errors as for SqliteExec. Returns FAILED_PRECONDITION when the
// file's version is newer than migrations.size() (written by a newer
// binary); a failed migration's error says which version it was making.
absl::Status MigrateSqlite(sqlite3* db,
                           absl::Span<const char* const> migrations,
                           absl::string_view what, absl::string_view prefix);

}  // namespace fleetcanary

#endif  // FLEETCANARY_COMMON_SQLITE_SQLITE_UTIL_H_

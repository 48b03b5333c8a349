// PostgresStore: the connection, statement execution, error mapping and
// Ping.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "common/log/log.h"
#include "controller/store/postgres_store_impl.h"

namespace fleetcanary {
namespace controller {
namespace store_internal {
namespace {

// SQLSTATEs after which a retry later may succeed (connection, shutdown,
// read-only, recovery, serialization).
bool Transient(const std::string& sqlstate) {
  return absl::StartsWith(sqlstate, "08") ||  // Connection exception.
         absl::StartsWith(sqlstate, "57") ||  // Operator intervention.
         absl::StartsWith(sqlstate, "53") ||  // Insufficient resources.
         sqlstate == "25006" ||               // Read-only transaction.
         sqlstate == "40001" || sqlstate == "40P01";
}

// Lock waits "lock timeout" (55P03) and sessions the server ended for idling
// in a transaction (25P03) are transient too: the blocker goes away.
bool LockBound(const std::string& sqlstate) {
  return sqlstate == "55P03" || sqlstate == "25P03";
}

}  // namespace

absl::Status PostgresStore::Ping() {
  absl::MutexLock lock(&mu_);
  FC_ASSIGN_OR_RETURN(
      Rows q, ExecLocked("SELECT pg_is_in_recovery() OR "
                         "current_setting('transaction_read_only') = 'on'"));
  if (q.size() > 0 && q.Bool(0, 0)) {
    return absl::UnavailableError(
        "postgres store: the database is read-only (in recovery or "
        "default_transaction_read_only)");
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::ConnectLocked() {
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK) {
    return absl::OkStatus();
  }
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
    prepared_.clear();
  }
  // Defaults first: settings in the URL override them (expand_dbname).
  const std::string connect_timeout = absl::StrCat(
      std::max<int64_t>(2, absl::ToInt64Seconds(options_.connect_timeout)));
  const std::string session = PostgresSessionOptions(options_);
  const std::pair<const char*, const char*> params[] = {
      {"connect_timeout", connect_timeout.c_str()},
      {"options", session.c_str()},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "5"},
      {"keepalives_count", "3"},
      {"tcp_user_timeout", "30000"},
      {"application_name", "fleetcanary-controller"},
      {"dbname", options_.url.c_str()},
  };
  std::vector<const char*> keys, values;
  for (const auto& [key, value] : params) {
    keys.push_back(key);
    values.push_back(value);
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr) {
    return absl::ResourceExhaustedError("postgres store: out of memory");
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(conn_);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    PQfinish(conn_);
    conn_ = nullptr;
    if (connected_once_) {
      LogWarning("postgres_store_unreachable", {{"error", msg}});
    }
    return absl::UnavailableError(
        absl::StrCat("postgres store: connecting: ", msg));
  }
  // Server notices ("relation already exists, skipping") are not errors.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  if (connected_once_) LogInfo("postgres_store_reconnected");
  connected_once_ = true;
  return absl::OkStatus();
}

absl::StatusOr<Rows> PostgresStore::ExecLocked(
    const std::string& sql, const std::vector<Param>& params) {
  if (!in_transaction_) FC_RETURN_IF_ERROR(ConnectLocked());
  if (conn_ == nullptr) {
    return absl::UnavailableError("postgres store: connection lost");
  }
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    const std::string name = absl::StrCat("s", prepared_.size());
    Result r(PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr));
    FC_RETURN_IF_ERROR(Check(r.get(), sql));
    it = prepared_.emplace(sql, name).first;
  }
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size());
  std::vector<int> formats(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].value.data();
    lengths[i] = static_cast<int>(params[i].value.size());
    formats[i] = params[i].binary ? 1 : 0;
  }
  Result r(PQexecPrepared(conn_, it->second.c_str(),
                          static_cast<int>(params.size()), values.data(),
                          lengths.data(), formats.data(), 0));
  FC_RETURN_IF_ERROR(Check(r.get(), sql));
  return Rows(std::move(r));
}

absl::Status PostgresStore::ExecScriptLocked(const char* sql) {
  Result r(PQexec(conn_, sql));
  return Check(r.get(), "migration");
}

absl::Status PostgresStore::Check(PGresult* r, absl::string_view what) {
  const ExecStatusType st =
      r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    return absl::OkStatus();
  }
  const char* state =
      r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const std::string sqlstate = state ? state : "";
  std::string msg = r != nullptr ? PQresultErrorMessage(r) : "";
  if (msg.empty()) msg = PQerrorMessage(conn_);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
    msg.pop_back();
  }
  const std::string text =
      absl::StrCat("postgres store: ", what.substr(0, 60), ": ", msg,
                   sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");
  if (PQstatus(conn_) != CONNECTION_OK || Transient(sqlstate) ||
      LockBound(sqlstate)) {
    return absl::UnavailableError(text);
  }
  if (sqlstate == "P0001" && absl::StrContains(msg, "fenced")) {
    return absl::FailedPreconditionError(text);
  }
  return absl::InternalError(text);
}

void PostgresStore::RollbackLocked() {
  in_transaction_ = false;
  if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) return;
  Result r(PQexec(conn_, "ROLLBACK"));
}

}  // namespace store_internal
}  // namespace controller
}  // namespace fleetcanary

#include "agent/outbox/outbox.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log/log.h"
#include "common/sqlite/sqlite_util.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace agent {
namespace {

constexpr uint64_t kDefaultMaxBytes = uint64_t{256} << 20;
constexpr uint64_t kPageBytes = 4096;  // SQLite's default page size.

const char* const kMigrations[] = {
    R"sql(
CREATE TABLE outcomes(seq INTEGER PRIMARY KEY, size INTEGER NOT NULL,
                      data BLOB NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta(key, value) VALUES('next_sequence', 1), ('acked_sequence', 0),
                                   ('dropped_total', 0);
)sql",
    // Probes started and not finished: an interrupted one becomes an
    // AGENT_ERROR outcome at the next open.
    R"sql(
CREATE TABLE started(probe_id TEXT PRIMARY KEY, data BLOB NOT NULL);
)sql",
};

class OutboxImpl : public Outbox {
 public:
  OutboxImpl(const OutboxOptions& options, sqlite3* db)
      : options_(options), db_(db) {
    if (options_.max_bytes == 0) options_.max_bytes = kDefaultMaxBytes;
  }
  ~OutboxImpl() override {
    for (sqlite3_stmt* s :
         {insert_, meta_set_, oldest_, delete_upto_, delete_range_, read_,
          max_seq_, started_insert_, started_delete_}) {
      sqlite3_finalize(s);
    }
    sqlite3_close_v2(db_);
    if (journal_fd_ >= 0) close(journal_fd_);
    if (lost_fd_ >= 0) close(lost_fd_);
  }

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    FC_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    FC_RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL"));
    // The WAL counts against max_bytes: an eighth of the bound is reserved
    // for it, and it is checkpointed (then truncated) whenever it would
    // outgrow that share, so small volumes never fill up with WAL.
    FC_RETURN_IF_ERROR(
        Exec(absl::StrCat("PRAGMA wal_autocheckpoint=",
                          std::max<uint64_t>(1, WalBudget() / kPageBytes))));
    FC_RETURN_IF_ERROR(
        Exec(absl::StrCat("PRAGMA journal_size_limit=", WalBudget())));
    FC_RETURN_IF_ERROR(OpenLostCounter());
    sqlite3_busy_timeout(db_, 5000);
    FC_RETURN_IF_ERROR(MigrateSqlite(db_, kMigrations, "outbox", "outbox"));
    FC_RETURN_IF_ERROR(Prepare(
        "INSERT INTO outcomes(seq, size, data) VALUES(?, ?, ?)", &insert_));
    FC_RETURN_IF_ERROR(
        Prepare("UPDATE meta SET value = ? WHERE key = ?", &meta_set_));
    FC_RETURN_IF_ERROR(Prepare(
        "SELECT seq, size FROM outcomes WHERE seq > ? ORDER BY seq LIMIT 256",
        &oldest_));
    FC_RETURN_IF_ERROR(
        Prepare("DELETE FROM outcomes WHERE seq <= ?", &delete_upto_));
    FC_RETURN_IF_ERROR(Prepare(
        "DELETE FROM outcomes WHERE seq > ? AND seq <= ?", &delete_range_));
    FC_RETURN_IF_ERROR(Prepare(
        "SELECT seq, data FROM outcomes WHERE seq > ? ORDER BY seq LIMIT ?",
        &read_));
    FC_RETURN_IF_ERROR(Prepare("SELECT MAX(seq) FROM outcomes", &max_seq_));
    FC_RETURN_IF_ERROR(
        Prepare("INSERT OR REPLACE INTO started(probe_id, data) VALUES(?, ?)",
                &started_insert_));
    FC_RETURN_IF_ERROR(
        Prepare("DELETE FROM started WHERE probe_id = ?", &started_delete_));
    // Load the counters.
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db_, "SELECT key, value FROM meta", -1, &q, nullptr);
    while (sqlite3_step(q) == SQLITE_ROW) {
      const std::string key =
          reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
      const uint64_t value = sqlite3_column_int64(q, 1);
      if (key == "next_sequence") next_sequence_ = value;
      if (key == "acked_sequence") acked_ = value;
      if (key == "dropped_total") dropped_ = value;
    }
    sqlite3_finalize(q);
    RecountLocked();
    // Until a Welcome says otherwise, anything stored may have been sent.
    sent_upto_ = next_sequence_ - 1;
    if (!options_.journal_path.empty()) {
      journal_fd_ = open(options_.journal_path.c_str(),
                         O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      if (journal_fd_ < 0) {
        return absl::UnavailableError(absl::StrCat(
            "outcome journal ", options_.journal_path, ": ", strerror(errno)));
      }
    }
    HoldReserveLocked();
    FC_RETURN_IF_ERROR(RecoverInterruptedLocked());
    LogInfo("outbox_opened", {{"path", options_.path},
                              {"depth", absl::StrCat(depth_)},
                              {"next_sequence", absl::StrCat(next_sequence_)},
                              {"acked", absl::StrCat(acked_)},
                              {"dropped_total", absl::StrCat(dropped_)}});
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Append(v1::Outcome outcome) override {
    absl::MutexLock lock(&mu_);
    return AppendLocked(std::move(outcome));
  }

  absl::Status MarkStarted(const v1::Outcome& probe) override {
    absl::MutexLock lock(&mu_);
    if (probe.probe_id().empty()) {
      return absl::InvalidArgumentError("outbox: started probe needs an id");
    }
    const std::string data = probe.SerializeAsString();
    sqlite3_bind_text(started_insert_, 1, probe.probe_id().c_str(), -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(started_insert_, 2, data.data(), data.size(),
                      SQLITE_STATIC);
    const int rc = sqlite3_step(started_insert_);
    sqlite3_reset(started_insert_);
    if (rc != SQLITE_DONE) return Error("recording a started probe");
    return absl::OkStatus();
  }

  // Turns the probes a previous process started and never finished into
  // AGENT_ERROR outcomes (so a crash mid-probe leaves a trace).
  absl::Status RecoverInterruptedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<v1::Outcome> interrupted;
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db_, "SELECT data FROM started", -1, &q, nullptr);
    while (sqlite3_step(q) == SQLITE_ROW) {
      v1::Outcome o;
      if (o.ParseFromArray(sqlite3_column_blob(q, 0),
                           sqlite3_column_bytes(q, 0))) {
        interrupted.push_back(std::move(o));
      }
    }
    sqlite3_finalize(q);
    for (v1::Outcome& o : interrupted) {
      o.set_outcome_class(v1::AGENT_ERROR);
      o.set_transfer_end(v1::LOCAL_ABORT);
      o.set_detail(
          "interrupted: the agent stopped (crash or kill) while this probe "
          "ran");
      // A failed append is counted as lost; the outbox still opens (a full
      // disk must not keep the agent from starting and draining).
      AppendLocked(std::move(o)).IgnoreError();
    }
    if (!interrupted.empty()) {
      if (absl::Status d = Exec("DELETE FROM started"); !d.ok()) {
        LogWarning("outbox_started_not_cleared", {{"error", d.ToString()}});
      }
      LogWarning("outbox_interrupted_probes",
                 {{"count", absl::StrCat(interrupted.size())}});
    }
    return absl::OkStatus();
  }

  // Stores `outcome` as the next sequence number, in one transaction with
  // dropping the oldest unsent outcomes over the size bound and the journal
  // lines. Returns the sequence number; on error nothing is stored and the
  // outcome is counted as lost.
  absl::StatusOr<uint64_t> AppendLocked(v1::Outcome outcome)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t seq = next_sequence_;
    outcome.set_sequence(seq);
    const std::string data = outcome.SerializeAsString();
    if (absl::Status b = Exec("BEGIN IMMEDIATE"); !b.ok()) {
      CountLostLocked(b);
      return b;
    }
    Dropped dropped;
    absl::Status s = WriteAppendLocked(seq, outcome, data, &dropped);
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      CountLostLocked(s);
      return s;
    }
    next_sequence_ = seq + 1;
    depth_ = depth_ + 1 - dropped.count;
    bytes_ = bytes_ + data.size() - dropped.bytes;
    dropped_ += dropped.count;
    ++appended_;
    if (dropped.count > 0) {
      LogWarning("outbox_dropped", {{"count", absl::StrCat(dropped.count)},
                                    {"dropped_total", absl::StrCat(dropped_)}});
    }
    return seq;
  }

  // What one append dropped to stay under the size bound.
  struct Dropped {
    uint64_t count = 0;
    uint64_t bytes = 0;
    std::vector<uint64_t> seqs;  // Only filled when journaling.
  };

  // The writes of one append. REQUIRES: inside the append's transaction
  // (the caller commits, or rolls back on error); `data` is `outcome`
  // serialized with sequence `seq`. Fills `dropped`.
  absl::Status WriteAppendLocked(uint64_t seq, const v1::Outcome& outcome,
                                 const std::string& data, Dropped* dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FC_RETURN_IF_ERROR(InsertOutcomeLocked(seq, outcome, data));
    FC_RETURN_IF_ERROR(DropOldestLocked(data.size(), dropped));
    if (journal_fd_ >= 0) {
      FC_RETURN_IF_ERROR(JournalLocked(seq, outcome, dropped->seqs));
    }
    return absl::OkStatus();
  }

  // Inserts the row, clears the probe's started mark (if it has an id) and
  // advances the stored next_sequence.
  absl::Status InsertOutcomeLocked(uint64_t seq, const v1::Outcome& outcome,
                                   const std::string& data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sqlite3_bind_int64(insert_, 1, seq);
    sqlite3_bind_int64(insert_, 2, data.size());
    sqlite3_bind_blob(insert_, 3, data.data(), data.size(), SQLITE_STATIC);
    const int rc = sqlite3_step(insert_);
    sqlite3_reset(insert_);
    if (rc != SQLITE_DONE) return Error("appending outcome");
    if (!outcome.probe_id().empty()) {
      sqlite3_bind_text(started_delete_, 1, outcome.probe_id().c_str(), -1,
                        SQLITE_TRANSIENT);
      const int src = sqlite3_step(started_delete_);
      sqlite3_reset(started_delete_);
      if (src != SQLITE_DONE) return Error("finishing a started probe");
    }
    return SetMeta("next_sequence", seq + 1);
  }

  // Bound: deletes the oldest outcomes not possibly sent until the stored
  // bytes plus `added_bytes` fit under max_bytes less the WAL's share (or
  // only possibly-sent ones are left), and stores the new dropped_total.
  absl::Status DropOldestLocked(uint64_t added_bytes, Dropped* dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t limit = options_.max_bytes - WalBudget();
    uint64_t bytes = bytes_ + added_bytes;
    while (bytes > limit) {
      uint64_t upto = 0;
      int found = 0;
      sqlite3_bind_int64(oldest_, 1, std::max(sent_upto_, acked_));
      while (bytes > limit && sqlite3_step(oldest_) == SQLITE_ROW) {
        upto = sqlite3_column_int64(oldest_, 0);
        if (journal_fd_ >= 0) dropped->seqs.push_back(upto);
        const uint64_t size = sqlite3_column_int64(oldest_, 1);
        bytes -= size;
        dropped->bytes += size;
        ++dropped->count;
        ++found;
      }
      sqlite3_reset(oldest_);
      if (found == 0) break;  // Only possibly-sent outcomes are left.
      sqlite3_bind_int64(delete_range_, 1, std::max(sent_upto_, acked_));
      sqlite3_bind_int64(delete_range_, 2, upto);
      const int drc = sqlite3_step(delete_range_);
      sqlite3_reset(delete_range_);
      if (drc != SQLITE_DONE) return Error("dropping oldest outcomes");
    }
    if (dropped->count > 0) {
      FC_RETURN_IF_ERROR(SetMeta("dropped_total", dropped_ + dropped->count));
    }
    return absl::OkStatus();
  }

  // Appends the outcome's journal line, then one line per dropped sequence.
  // REQUIRES: journal_fd_ >= 0.
  absl::Status JournalLocked(uint64_t seq, const v1::Outcome& outcome,
                             const std::vector<uint64_t>& dropped_seqs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string line =
        absl::StrCat(seq, " ", outcome.probe_id(), " ",
                     v1::OutcomeClass_Name(outcome.outcome_class()), " ",
                     v1::InvokeMode_Name(outcome.mode()), " ",
                     outcome.requested_bytes(), "\n");
    for (uint64_t d : dropped_seqs) absl::StrAppend(&line, "dropped ", d, "\n");
    if (write(journal_fd_, line.data(), line.size()) !=
        static_cast<ssize_t>(line.size())) {
      return absl::UnavailableError("writing the outcome journal");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<v1::Outcome>> ReadAfter(
      uint64_t after, size_t max_count, size_t max_bytes) override {
    absl::MutexLock lock(&mu_);
    return ReadLocked(after, max_count, max_bytes);
  }

  absl::StatusOr<std::vector<v1::Outcome>> ReadForSend(
      uint64_t after, size_t max_count, size_t max_bytes) override {
    absl::MutexLock lock(&mu_);
    auto out = ReadLocked(after, max_count, max_bytes);
    if (out.ok() && !out->empty()) {
      sent_upto_ = std::max(sent_upto_, out->back().sequence());
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::Outcome>> ReadLocked(uint64_t after,
                                                      size_t max_count,
                                                      size_t max_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<v1::Outcome> out;
    size_t bytes = 0;
    sqlite3_bind_int64(read_, 1, after);
    sqlite3_bind_int64(read_, 2, max_count);
    int rc;
    while ((rc = sqlite3_step(read_)) == SQLITE_ROW) {
      const int n = sqlite3_column_bytes(read_, 1);
      if (!out.empty() && bytes + n > max_bytes) break;
      v1::Outcome o;
      if (!o.ParseFromArray(sqlite3_column_blob(read_, 1), n)) {
        sqlite3_reset(read_);
        return absl::DataLossError(absl::StrCat(
            "outbox: unparseable outcome ", sqlite3_column_int64(read_, 0)));
      }
      bytes += n;
      out.push_back(std::move(o));
    }
    sqlite3_reset(read_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("reading outbox");
    return out;
  }

  absl::Status Ack(uint64_t sequence) override {
    absl::MutexLock lock(&mu_);
    if (sequence <= acked_) return absl::OkStatus();
    absl::Status s = AckLocked(sequence);
    if (!s.ok() && sqlite3_errcode(db_) == SQLITE_FULL) {
      // Deleting acknowledged outcomes is what frees space for new ones:
      // release the reserve, move the WAL into the database, try again.
      const bool released = ReleaseReserveLocked();
      Exec("PRAGMA wal_checkpoint(TRUNCATE)").IgnoreError();
      s = AckLocked(sequence);
      LogWarning("outbox_ack_on_full_disk",
                 {{"reserve_released", released ? "true" : "false"},
                  {"status", s.ToString()}});
    }
    if (s.ok() && !reserve_held_) HoldReserveLocked();
    return s;
  }

  absl::Status AckLocked(uint64_t sequence) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    FC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      sqlite3_bind_int64(delete_upto_, 1, sequence);
      const int rc = sqlite3_step(delete_upto_);
      sqlite3_reset(delete_upto_);
      if (rc != SQLITE_DONE) return Error("deleting acknowledged outcomes");
      FC_RETURN_IF_ERROR(SetMeta("acked_sequence", sequence));
      if (sequence >= next_sequence_) {
        // The controller has seen more of this agent id than this outbox
        // remembers (a lost data dir): continue after it, never reuse.
        FC_RETURN_IF_ERROR(SetMeta("next_sequence", sequence + 1));
      }
      return absl::OkStatus();
    }();
    if (s.ok()) s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    if (sequence >= next_sequence_) {
      LogWarning("outbox_sequence_advanced",
                 {{"from", absl::StrCat(next_sequence_)},
                  {"to", absl::StrCat(sequence + 1)}});
      next_sequence_ = sequence + 1;
    }
    acked_ = sequence;
    RecountLocked();  // Cheap: the acknowledged rows are gone.
    return absl::OkStatus();
  }

  void MarkSent(uint64_t sequence) override {
    absl::MutexLock lock(&mu_);
    sent_upto_ = std::max(sent_upto_, sequence);
  }

  void ResetSent(uint64_t sequence) override {
    absl::MutexLock lock(&mu_);
    sent_upto_ = sequence;
  }

  OutboxStats stats() override {
    absl::MutexLock lock(&mu_);
    OutboxStats s;
    s.depth = depth_;
    s.bytes = bytes_;
    s.last_sequence = next_sequence_ - 1;
    s.acked_sequence = acked_;
    s.last_stored_sequence = acked_;
    if (depth_ > 0 && sqlite3_step(max_seq_) == SQLITE_ROW &&
        sqlite3_column_type(max_seq_, 0) != SQLITE_NULL) {
      s.last_stored_sequence = std::max<uint64_t>(
          acked_, static_cast<uint64_t>(sqlite3_column_int64(max_seq_, 0)));
    }
    sqlite3_reset(max_seq_);
    s.dropped_total = dropped_ + lost_;
    s.lost_total = lost_;
    s.appended_total = appended_;
    return s;
  }

 private:
  absl::Status Error(absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return SqliteError(db_, "outbox", what);
  }
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return SqliteExec(db_, sql, "outbox");
  }
  absl::Status Prepare(const char* sql, sqlite3_stmt** stmt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sqlite3_prepare_v2(db_, sql, -1, stmt, nullptr) != SQLITE_OK) {
      return Error("preparing statement");
    }
    return absl::OkStatus();
  }
  absl::Status SetMeta(const char* key, uint64_t value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sqlite3_bind_int64(meta_set_, 1, value);
    sqlite3_bind_text(meta_set_, 2, key, -1, SQLITE_STATIC);
    const int rc = sqlite3_step(meta_set_);
    sqlite3_reset(meta_set_);
    if (rc != SQLITE_DONE) return Error("updating counters");
    return absl::OkStatus();
  }

  // Sets depth_ and bytes_ from the stored outcomes (left as they were if
  // the count cannot be read).
  void RecountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db_,
                       "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outcomes",
                       -1, &q, nullptr);
    if (sqlite3_step(q) == SQLITE_ROW) {
      depth_ = sqlite3_column_int64(q, 0);
      bytes_ = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
  }

  // The share of max_bytes kept for the WAL.
  uint64_t WalBudget() const { return options_.max_bytes / 8; }

  // <path>.lost: 8 bytes, the cumulative count of outcomes that could not
  // be stored at all (e.g. a full disk). Allocated once at open and then
  // overwritten in place, so it can still be updated when the disk is full.
  // An in-memory outbox (":memory:", tests) keeps the count in memory only.
  absl::Status OpenLostCounter() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.path == ":memory:") return absl::OkStatus();
    const std::string path = options_.path + ".lost";
    lost_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lost_fd_ < 0) {
      return absl::UnavailableError(
          absl::StrCat("outbox lost counter ", path, ": ", strerror(errno)));
    }
    uint64_t value = 0;
    if (pread(lost_fd_, &value, sizeof(value), 0) == sizeof(value)) {
      lost_ = value;
    } else if (pwrite(lost_fd_, &value, sizeof(value), 0) != sizeof(value) ||
               fsync(lost_fd_) != 0) {
      return absl::UnavailableError(
          absl::StrCat("outbox lost counter ", path, ": ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  // <path>.reserve: space set aside while the disk has room (an eighth of
  // the WAL's share, 64 KiB to 1 MiB) and given back when an acknowledgement
  // cannot be written for lack of space. On a full disk the outbox could
  // otherwise never delete what the controller acknowledged - the one write
  // that frees space - and would stay full for good. Held again once an
  // acknowledgement succeeds and the space is there.
  uint64_t ReserveBytes() const {
    return std::clamp<uint64_t>(WalBudget() / 8, 64 << 10, 1 << 20);
  }
  void HoldReserveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.path == ":memory:" || reserve_held_) return;
    const std::string path = options_.path + ".reserve";
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    const int err = posix_fallocate(fd, 0, static_cast<off_t>(ReserveBytes()));
    close(fd);
    if (err != 0) {
      unlink(path.c_str());  // A partial reserve would only take space.
      if (!reserve_warned_) {
        reserve_warned_ = true;
        LogWarning("outbox_reserve_unavailable",
                   {{"path", path}, {"error", std::strerror(err)}});
      }
      return;
    }
    reserve_held_ = true;
    reserve_warned_ = false;
  }
  bool ReleaseReserveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!reserve_held_) return false;
    reserve_held_ = false;
    return unlink((options_.path + ".reserve").c_str()) == 0;
  }

  // An outcome could not be stored: count it durably (reported to the
  // controller with the drops) and say so.
  void CountLostLocked(const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++lost_;
    bool persisted = false;
    if (lost_fd_ >= 0) {
      persisted = pwrite(lost_fd_, &lost_, sizeof(lost_), 0) ==
                      static_cast<ssize_t>(sizeof(lost_)) &&
                  fdatasync(lost_fd_) == 0;
    }
    LogError("outbox_outcome_lost",
             {{"lost_total", absl::StrCat(lost_)},
              {"persisted", persisted ? "true" : "false"},
              {"error", why.ToString()}});
  }

  OutboxOptions options_;
  absl::Mutex mu_;
  // State below is protected by mu_.
  sqlite3* const db_ ABSL_PT_GUARDED_BY(mu_);
  sqlite3_stmt* insert_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* meta_set_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* oldest_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* delete_upto_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* delete_range_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* read_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* max_seq_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* started_insert_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* started_delete_ ABSL_GUARDED_BY(mu_) = nullptr;
  int journal_fd_ ABSL_GUARDED_BY(mu_) = -1;
  bool reserve_held_ ABSL_GUARDED_BY(mu_) = false;
  bool reserve_warned_ ABSL_GUARDED_BY(mu_) = false;
  int lost_fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t lost_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t depth_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
  // Highest sequence that may have reached the controller (never dropped).
  uint64_t sent_upto_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Outbox>> Outbox::Create(
    const OutboxOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("outbox path: required");
  }
  FC_ASSIGN_OR_RETURN(sqlite3 * db, OpenSqlite(options.path, "outbox"));
  auto outbox = std::make_unique<OutboxImpl>(options, db);
  FC_RETURN_IF_ERROR(
      Annotate(outbox->Init(), absl::StrCat("opening outbox ", options.path)));
  return std::unique_ptr<Outbox>(std::move(outbox));
}

}  // namespace agent
}  // namespace fleetcanary

// A hub's timeline in a ring of fixed-size records, written as Chrome trace event JSON.

#include "greenfiber/trace.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "greenfiber/detail/trace_hooks.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {
namespace detail {

namespace {

enum class kind : std::uint8_t {
    run,         // a fiber's run: ts..ts+value on its track
    callback,    // a callback run by the hub, on the hub's track
    poll,        // the hub in its reactor; str = handlers run, flag = blocking
    park,        // str = reason
    spawn,       // str = name, value = the spawner's track
    finish,      // flag = outcome (0 done, 1 failed, 2 cancelled)
    rename,      // str = new name
    timer,       // a park's deadline fired; str = reason of the park
    call_later,  // a call_later/call_at callback runs, on the hub's track
    io,          // str = reason, value = bytes, flag = failed
    completion,  // a use_fiber operation completed; str = reason
    loop,        // a turn of the hub's loop; value = ready entries
};

// One entry of the ring. Fixed size, no pointers: what it names is interned in the trace.
struct record {
    std::int64_t ts;      // ns since the trace started
    std::int64_t value;   // see kind
    std::uint64_t track;  // the greenlet's id (the thread's main greenlet: 0)
    std::uint32_t str;    // an interned string, or a count (see kind)
    kind k;
    std::uint8_t flag;
    std::uint16_t unused = 0;
};
static_assert(sizeof(record) == 32, "records are meant to be compact");

bool str_is_string(kind k) noexcept {
    return k == kind::park || k == kind::spawn || k == kind::rename || k == kind::timer ||
           k == kind::io || k == kind::completion;
}

// A track: one fiber. Its names with the time each was given, so a slice shows the name the
// task had when it ran.
struct track_info {
    std::vector<std::pair<std::int64_t, std::uint32_t>> names;
    bool task = false;      // a task's track (its name comes from spawn and rename)
    bool finished = false;  // the task finished: the track is needed only while referenced
};

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

std::size_t round_capacity(std::size_t n) {
    std::size_t c = 16;
    while (c < n && c < (std::size_t(1) << 40)) c <<= 1;
    return c;
}

long os_thread_id() noexcept {
    return static_cast<long>(::syscall(SYS_gettid));
}

}  // namespace

// The timeline of one hub. Thread-bound: every hook runs on the hub's thread.
class hub_trace {
  public:
    hub_trace(hub& h, std::size_t capacity)
        : ring_(round_capacity(capacity)),
          mask_(ring_.size() - 1),
          t0_(std::chrono::steady_clock::now()),
          hub_track_(access::impl(h.loop_)->id),
          os_tid_(os_thread_id()),
          string_limit_(std::max<std::size_t>(1024, ring_.size())) {
        strings_.emplace_back();
        ids_.emplace(std::string(), 0);
        // Every greenlet created from here on has a larger id (ids are handed out in
        // creation order): those need no look-up at resume unless they are plain greenlets.
        greenlet probe([] {});
        first_new_id_ = access::impl(probe)->id;
        name_track(hub_track_, "hub", false);
        name_track(0, "main", false);
    }
    hub_trace(const hub_trace&) = delete;
    hub_trace& operator=(const hub_trace&) = delete;

    // Attaches to / detaches from the hub's hook pointer.
    static void attach(hub& h, hub_trace* t) noexcept { h.trace_ = t; }
    void detach() noexcept {
        if (hub* h = hub_if_any(); h != nullptr && h->trace_ == this) h->trace_ = nullptr;
    }

    std::int64_t now() const noexcept {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now() - t0_)
            .count();
    }

    void push(const record& r) noexcept {
        ring_[total_ & mask_] = r;
        ++total_;
    }
    void push(std::int64_t ts, kind k, std::uint64_t track, std::uint32_t str = 0,
              std::int64_t value = 0, std::uint8_t flag = 0) noexcept {
        push(record{ts, value, track, str, k, flag});
    }

    // The id of `s` in the string table, added if new; 0 ("") if it cannot be stored.
    std::uint32_t intern(std::string_view s) noexcept {
        if (auto it = ids_.find(s); it != ids_.end()) return it->second;
        try {
            if (strings_.size() >= string_limit_) compact();
            const auto id = static_cast<std::uint32_t>(strings_.size());
            strings_.emplace_back(s);
            ids_.emplace(strings_.back(), id);
            return id;
        } catch (...) {
            return 0;
        }
    }

    // intern() for a wait's reason. Reasons are mostly string literals, so a small cache
    // keyed by the pointer skips the hash; the content is compared all the same, since a
    // reason may also be a string in the waiting frame, whose address another one reuses.
    std::uint32_t intern_reason(const char* s) noexcept {
        if (s == nullptr) return 0;
        reason_slot& slot = reasons_[(reinterpret_cast<std::uintptr_t>(s) >> 3) % reasons_.size()];
        if (slot.ptr == s && slot.id < strings_.size() && strings_[slot.id] == s) return slot.id;
        const std::uint32_t id = intern(s);
        slot = reason_slot{s, id};
        return id;
    }

    void name_track(std::uint64_t track, std::string_view name, bool task) noexcept {
        const std::uint32_t id = intern(name);
        try {
            track_info& info = tracks_[track];
            info.task = info.task || task;
            info.names.emplace_back(now(), id);
        } catch (...) {
        }
    }

    // A fiber the trace may not know yet: one that existed before it started, or a plain
    // greenlet (tasks are named at spawn).
    void know(const greenlet_impl* g) noexcept {
        if (g->id >= first_new_id_ && g->local != nullptr) return;
        if (tracks_.find(g->id) != tracks_.end()) return;
        try {
            if (g->local != nullptr) {
                name_track(g->id, static_cast<const task_base*>(g->local)->name(), true);
            } else if (g->is_main) {
                name_track(g->id, "main", false);
            } else {
                name_track(g->id, g->name.empty() ? "greenlet #" + std::to_string(g->id) : g->name,
                           false);
            }
        } catch (...) {
            // Out of memory: the track is written as "greenlet #id".
        }
    }

    void open_slice(kind k, std::uint64_t track, std::int64_t start, bool from_start) noexcept {
        slice_kind_ = k;
        slice_track_ = track;
        slice_start_ = start;
        slice_from_start_ = from_start;
        in_slice_ = true;
    }
    void close_slice() noexcept {
        if (!in_slice_) return;
        in_slice_ = false;
        const std::int64_t end = now();
        // At least 1 ns, so that every run is drawn and begin < end holds.
        push(slice_start_, slice_kind_, slice_track_, 0,
             std::max<std::int64_t>(1, end - slice_start_));
    }

    void write(std::ostream& os) const;

    void mark_finished(std::uint64_t track) noexcept {
        if (auto it = tracks_.find(track); it != tracks_.end()) it->second.finished = true;
    }

    // Hooks' state (see trace_hooks.hpp).
    bool recording_ = true;
    bool in_slice_ = false;
    bool slice_from_start_ = false;
    kind slice_kind_ = kind::run;
    std::uint64_t slice_track_ = 0;
    std::int64_t slice_start_ = 0;
    bool in_poll_ = false;
    std::int64_t poll_start_ = 0;

    std::vector<record> ring_;
    std::size_t mask_;
    std::uint64_t total_ = 0;
    std::chrono::steady_clock::time_point t0_;
    std::uint64_t hub_track_;
    std::uint64_t first_new_id_ = 0;
    long os_tid_;

  private:
    // Drops the strings and the finished tracks that no kept record refers to any more, so
    // that the tables stay proportional to the ring however many tasks come and go.
    void compact();

    std::vector<std::string> strings_;
    std::unordered_map<std::string, std::uint32_t, string_hash, std::equal_to<>> ids_;
    std::unordered_map<std::uint64_t, track_info> tracks_;
    std::size_t string_limit_;
    struct reason_slot {
        const char* ptr = nullptr;
        std::uint32_t id = 0;
    };
    std::array<reason_slot, 64> reasons_{};  // see intern_reason()

    friend struct trace_writer;
};

void hub_trace::compact() {
    const std::uint64_t first = total_ > ring_.size() ? total_ - ring_.size() : 0;
    std::unordered_set<std::uint64_t> used_tracks;
    std::vector<char> used(strings_.size(), 0);
    used[0] = 1;
    for (std::uint64_t i = first; i < total_; ++i) {
        const record& r = ring_[i & mask_];
        used_tracks.insert(r.track);
        if (r.k == kind::spawn) used_tracks.insert(static_cast<std::uint64_t>(r.value));
        if (str_is_string(r.k) && r.str < used.size()) used[r.str] = 1;
    }
    for (auto it = tracks_.begin(); it != tracks_.end();) {
        const bool keep = used_tracks.count(it->first) != 0 ||
                          (it->second.task && !it->second.finished) || it->first == hub_track_ ||
                          it->first == 0;
        if (!keep) {
            it = tracks_.erase(it);
            continue;
        }
        // A track keeps the names its kept records may show: the latest one given at or
        // before the oldest record, and every later one.
        auto& names = it->second.names;
        const std::int64_t oldest = first < total_ ? ring_[first & mask_].ts : 0;
        std::size_t drop = 0;
        while (drop + 1 < names.size() && names[drop + 1].first <= oldest) ++drop;
        names.erase(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(drop));
        for (const auto& n : names) used[n.second] = 1;
        ++it;
    }
    std::vector<std::uint32_t> remap(strings_.size(), 0);
    std::vector<std::string> kept;
    for (std::size_t i = 0; i < strings_.size(); ++i) {
        if (!used[i]) continue;
        remap[i] = static_cast<std::uint32_t>(kept.size());
        kept.push_back(std::move(strings_[i]));
    }
    for (std::uint64_t i = first; i < total_; ++i) {
        record& r = ring_[i & mask_];
        if (str_is_string(r.k)) r.str = r.str < remap.size() ? remap[r.str] : 0;
    }
    for (auto& [id, info] : tracks_) {
        for (auto& n : info.names) n.second = remap[n.second];
    }
    strings_ = std::move(kept);
    reasons_.fill(reason_slot{});  // their ids changed
    ids_.clear();
    for (std::size_t i = 0; i < strings_.size(); ++i)
        ids_.emplace(strings_[i], static_cast<std::uint32_t>(i));
    // Amortised: the next compaction comes only after as many new strings again.
    string_limit_ =
        std::max<std::size_t>(std::max<std::size_t>(1024, ring_.size()), 2 * strings_.size());
}

namespace {

// The calling thread's trace: the one recording, or the last one stopped. Destroyed at thread
// exit, after it let go of the hub (the hub may outlive it by a little).
struct trace_holder {
    std::unique_ptr<hub_trace> trace;
    ~trace_holder() {
        if (trace) trace->detach();
    }
};
thread_local trace_holder this_trace;

std::uint64_t track_of_current() noexcept {
    const thread_state* ts = tls;
    return ts != nullptr ? ts->current->id : 0;
}

void json_string(std::ostream& os, std::string_view s) {
    os << '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            os << '\\' << c;
        } else if (u < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            os << buf;
        } else {
            os << c;
        }
    }
    os << '"';
}

// Microseconds with nanosecond digits, as the format's `ts` and `dur` are in µs.
void json_us(std::ostream& os, std::int64_t ns) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ns / 1000),
                  static_cast<long long>(ns % 1000));
    os << buf;
}

const char* outcome_name(std::uint8_t o) noexcept {
    switch (o) {
        case 0:
            return "done";
        case 1:
            return "failed";
        default:
            return "cancelled";
    }
}

}  // namespace

struct trace_writer {
    const hub_trace& t;

    const std::string& str(std::uint32_t id) const {
        static const std::string empty;
        return id < t.strings_.size() ? t.strings_[id] : empty;
    }

    // The name `track` had at `ts`.
    std::string name_at(std::uint64_t track, std::int64_t ts) const {
        auto it = t.tracks_.find(track);
        if (it == t.tracks_.end() || it->second.names.empty())
            return "greenlet #" + std::to_string(track);
        const auto& names = it->second.names;
        std::uint32_t id = names.front().second;
        for (const auto& n : names) {
            if (n.first > ts) break;
            id = n.second;
        }
        return str(id);
    }

    // A track's label: its last name, with the earlier ones it had during the trace.
    std::string label(std::uint64_t track) const {
        auto it = t.tracks_.find(track);
        if (it == t.tracks_.end() || it->second.names.empty())
            return "greenlet #" + std::to_string(track);
        const auto& names = it->second.names;
        std::string out = str(names.back().second);
        if (it->second.task) out = "task '" + out + "'";
        if (names.size() > 1) {
            out += " (was";
            for (std::size_t i = 0; i + 1 < names.size(); ++i)
                out += (i == 0 ? " '" : ", '") + str(names[i].second) + "'";
            out += ")";
        }
        return out;
    }

    void head(std::ostream& os, const char* ph, const std::string& name, const char* cat,
              std::uint64_t track, std::int64_t ts) const {
        os << "{\"ph\":\"" << ph << "\",\"name\":";
        json_string(os, name);
        os << ",\"cat\":\"" << cat << "\",\"pid\":" << t.os_tid_ << ",\"tid\":" << track
           << ",\"ts\":";
        json_us(os, ts);
    }

    void event(std::ostream& os, const record& r) const {
        switch (r.k) {
            case kind::run:
            case kind::callback:
            case kind::poll: {
                const bool run = r.k == kind::run;
                const std::string name = run ? name_at(r.track, r.ts)
                                         : r.k == kind::poll
                                             ? (r.flag ? "reactor wait" : "reactor poll")
                                             : "callback";
                head(os, "X", name, run ? "run" : "hub", r.track, r.ts);
                os << ",\"dur\":";
                json_us(os, r.value);
                if (r.k == kind::poll) os << ",\"args\":{\"handlers\":" << r.str << "}";
                os << "}";
                return;
            }
            case kind::loop:
                head(os, "C", "ready", "hub", r.track, r.ts);
                os << ",\"args\":{\"ready\":" << r.value << "}}";
                return;
            default:
                break;
        }
        const char* name = "";
        switch (r.k) {
            case kind::park:
                name = "park";
                break;
            case kind::spawn:
                name = "spawn";
                break;
            case kind::finish:
                name = "finish";
                break;
            case kind::rename:
                name = "rename";
                break;
            case kind::timer:
                name = "timer fired";
                break;
            case kind::call_later:
                name = "call_later";
                break;
            case kind::io:
                name = "I/O done";
                break;
            case kind::completion:
                name = "use_fiber done";
                break;
            default:
                break;
        }
        head(os, "i", name, name, r.track, r.ts);
        os << ",\"s\":\"t\",\"args\":{";
        switch (r.k) {
            case kind::park:
            case kind::timer:
            case kind::completion:
                os << "\"reason\":";
                json_string(os, str(r.str));
                break;
            case kind::io:
                os << "\"reason\":";
                json_string(os, str(r.str));
                os << ",\"bytes\":" << r.value << ",\"failed\":" << (r.flag ? "true" : "false");
                break;
            case kind::spawn:
                os << "\"name\":";
                json_string(os, str(r.str));
                os << ",\"by\":";
                json_string(os, name_at(static_cast<std::uint64_t>(r.value), r.ts));
                break;
            case kind::rename:
                os << "\"to\":";
                json_string(os, str(r.str));
                break;
            case kind::finish:
                os << "\"outcome\":\"" << outcome_name(r.flag) << "\"";
                break;
            default:
                break;
        }
        os << "}}";
    }

    void write(std::ostream& os) const {
        const std::uint64_t first = t.total_ > t.ring_.size() ? t.total_ - t.ring_.size() : 0;
        std::vector<record> kept;
        kept.reserve(static_cast<std::size_t>(t.total_ - first));
        for (std::uint64_t i = first; i < t.total_; ++i) kept.push_back(t.ring_[i & t.mask_]);
        // A run is recorded when it ends: sort by start so the file reads in time order.
        std::stable_sort(kept.begin(), kept.end(),
                         [](const record& a, const record& b) { return a.ts < b.ts; });
        std::unordered_set<std::uint64_t> tracks{t.hub_track_};
        for (const record& r : kept) tracks.insert(r.track);
        std::vector<std::uint64_t> ordered(tracks.begin(), tracks.end());
        std::sort(ordered.begin(), ordered.end());

        os << "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"greenfiber\","
           << "\"thread\":" << t.os_tid_ << ",\"capacity\":" << t.ring_.size()
           << ",\"recorded_events\":" << t.total_ << ",\"lost_events\":" << first
           << "},\"traceEvents\":[\n";
        os << "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":" << t.os_tid_
           << ",\"tid\":0,\"args\":{\"name\":\"greenfiber hub (thread " << t.os_tid_ << ")\"}}";
        for (const std::uint64_t track : ordered) {
            os << ",\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":" << t.os_tid_
               << ",\"tid\":" << track << ",\"args\":{\"name\":";
            json_string(os, label(track));
            // The hub's track first, then the main greenlet, then fibers by creation.
            const long long sort = track == t.hub_track_ ? -2 : track == 0 ? -1 : (long long)track;
            os << "}},\n{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":" << t.os_tid_
               << ",\"tid\":" << track << ",\"args\":{\"sort_index\":" << sort << "}}";
        }
        if (first > 0) {
            os << ",\n";
            head(os, "i",
                 std::to_string(first) + " earlier events lost: the trace ring (" +
                     std::to_string(t.ring_.size()) + " records) was full",
                 "lost", t.hub_track_, kept.empty() ? 0 : kept.front().ts);
            os << ",\"s\":\"p\",\"args\":{\"lost_events\":" << first << "}}";
        }
        for (const record& r : kept) {
            os << ",\n";
            event(os, r);
        }
        os << "\n]}\n";
    }
};

void hub_trace::write(std::ostream& os) const {
    trace_writer{*this}.write(os);
}

// ---- hooks ------------------------------------------------------------------------------------

void trace_resume(hub_trace& t, const greenlet_impl* fiber) noexcept {
    if (fiber == nullptr) {
        t.open_slice(kind::callback, t.hub_track_, t.now(), false);
        return;
    }
    t.know(fiber);
    t.open_slice(kind::run, fiber->id, t.now(), false);
}

void trace_suspend(hub_trace& t) noexcept {
    t.close_slice();
}

void trace_park(hub_trace& t, const waiter& w) noexcept {
    const std::uint64_t track = track_of_current();
    t.push(t.now(), kind::park, track, t.intern_reason(w.what));
    // A slice that began with start_trace() may not end in the hub's resume (the caller was
    // not resumed by it): it ends at its first park.
    if (t.in_slice_ && t.slice_from_start_ && t.slice_track_ == track) t.close_slice();
}

void trace_spawn(hub_trace& t, const greenlet_impl* f, const char* name) noexcept {
    t.name_track(f->id, name, true);
    t.push(t.now(), kind::spawn, f->id, t.intern(name),
           static_cast<std::int64_t>(track_of_current()));
}

void trace_finish(hub_trace& t, const greenlet_impl* f, int outcome) noexcept {
    t.push(t.now(), kind::finish, f->id, 0, 0, static_cast<std::uint8_t>(outcome));
    t.know(f);  // a task older than the trace finishing first thing
    t.mark_finished(f->id);
}

void trace_rename(hub_trace& t, const greenlet_impl* f, const char* name) noexcept {
    t.know(f);
    t.name_track(f->id, name, true);
    t.push(t.now(), kind::rename, f->id, t.intern(name));
}

void trace_timer(hub_trace& t, const waiter& w) noexcept {
    t.push(t.now(), kind::timer, w.fiber != nullptr ? w.fiber->id : t.hub_track_,
           t.intern_reason(w.what));
}

void trace_call_later(hub_trace& t) noexcept {
    t.push(t.now(), kind::call_later, t.hub_track_);
}

void trace_io_ready(hub_trace& t, const waiter& w, bool failed, std::size_t bytes) noexcept {
    t.push(t.now(), kind::io, w.fiber != nullptr ? w.fiber->id : t.hub_track_,
           t.intern_reason(w.what), static_cast<std::int64_t>(bytes), failed ? 1 : 0);
}

void trace_completion(hub_trace& t, const waiter& w) noexcept {
    t.push(t.now(), kind::completion, w.fiber != nullptr ? w.fiber->id : t.hub_track_,
           t.intern_reason(w.what));
}

void trace_loop_turn(hub_trace& t, std::size_t ready) noexcept {
    t.push(t.now(), kind::loop, t.hub_track_, 0, static_cast<std::int64_t>(ready));
}

void trace_poll_begin(hub_trace& t) noexcept {
    t.in_poll_ = true;
    t.poll_start_ = t.now();
}

void trace_poll_end(hub_trace& t, std::size_t handlers, bool blocking) noexcept {
    if (!t.in_poll_) return;  // the trace started inside the reactor
    t.in_poll_ = false;
    const std::int64_t end = t.now();
    t.push(t.poll_start_, kind::poll, t.hub_track_,
           static_cast<std::uint32_t>(std::min<std::size_t>(handlers, UINT32_MAX)),
           std::max<std::int64_t>(1, end - t.poll_start_), blocking ? 1 : 0);
}

}  // namespace detail

// ---- API --------------------------------------------------------------------------------------

void start_trace(trace_options opts) {
    hub& h = hub::current();  // first: the hub outlives this thread's trace holder
    if (detail::trace_of(h) != nullptr)
        throw error(
            "greenfiber: start_trace(): this thread's hub is recording a trace already; call "
            "stop_trace() first");
    auto t = std::make_unique<detail::hub_trace>(h, opts.capacity);
    // Called from a fiber: its run goes on from here (it ends when the hub gets control back,
    // at its first park, or at stop_trace()).
    if (!h.in_hub()) {
        const detail::greenlet_impl* self = detail::this_thread().current;
        t->know(self);
        t->open_slice(detail::kind::run, self->id, 0, true);
    }
    detail::this_trace.trace = std::move(t);
    detail::hub_trace::attach(h, detail::this_trace.trace.get());
}

void stop_trace() noexcept {
    detail::hub_trace* t = detail::this_trace.trace.get();
    if (t == nullptr || !t->recording_) return;
    t->recording_ = false;
    t->detach();
    // The caller's own run ends here: the hub's hook no longer sees it end.
    if (t->in_slice_ && t->slice_track_ == detail::track_of_current()) {
        t->close_slice();
    }
    t->in_slice_ = false;
    t->in_poll_ = false;
}

trace_info trace_state() noexcept {
    trace_info out;
    const detail::hub_trace* t = detail::this_trace.trace.get();
    if (t == nullptr) return out;
    out.recording = t->recording_;
    out.capacity = t->ring_.size();
    out.recorded = t->total_;
    out.records = static_cast<std::size_t>(std::min<std::uint64_t>(t->total_, t->ring_.size()));
    out.lost = t->total_ - out.records;
    return out;
}

void write_trace(std::ostream& os) {
    if (const detail::hub_trace* t = detail::this_trace.trace.get()) {
        t->write(os);
        return;
    }
    os << "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"greenfiber\","
          "\"recorded_events\":0,\"lost_events\":0},\"traceEvents\":[]}\n";
}

void write_trace(const std::string& path) {
    std::ofstream f(path, std::ios::out | std::ios::trunc | std::ios::binary);
    if (!f) {
        throw std::system_error(errno, std::generic_category(),
                                "greenfiber: write_trace(): cannot open '" + path + "'");
    }
    write_trace(f);
    f.flush();
    if (!f) {
        throw std::system_error(errno != 0 ? errno : EIO, std::generic_category(),
                                "greenfiber: write_trace(): cannot write '" + path + "'");
    }
}

}  // namespace greenfiber

// Buffered streams: the reader's buffer and searches, the writer's two buffers and drain.
// Written once against detail::stream_ops, whatever the socket type.

#include "greenfiber/stream.hpp"

#include "greenfiber/net.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include <boost/asio/error.hpp>

#include "greenfiber/error.hpp"

namespace greenfiber {

namespace {

// What one read from the stream asks for when the caller needs no more: large enough
// that a stream of small messages costs few system calls, small enough that an idle
// connection's buffer stays small.
constexpr std::size_t read_chunk = std::size_t{16} * 1024;
// A buffer that grew beyond this (a long readexactly, a burst of writes) is freed once it
// is empty, so that one large message does not pin memory for the life of a connection.
constexpr std::size_t keep_capacity = std::size_t{64} * 1024;
// A call that reads this much without the hub running anything else yields once: a socket
// read returns at once while data is waiting, so a fast peer would otherwise keep the
// other fibers (and the call's own deadline) waiting until the whole message is in.
constexpr std::size_t yield_every = std::size_t{1} << 20;

std::string incomplete_message(std::size_t got, std::optional<std::size_t> expected) {
    std::string m =
        "greenfiber: incomplete read: " + std::to_string(got) + " bytes read on a total of ";
    m += expected ? std::to_string(*expected) : std::string("undefined");
    m += " expected bytes";
    return m;
}

[[noreturn]] void throw_io(const boost::system::error_code& ec, const char* what) {
    throw boost::system::system_error(ec, std::string("greenfiber: ") + what);
}

}  // namespace

incomplete_read_error::incomplete_read_error(std::string partial,
                                             std::optional<std::size_t> expected)
    : boost::system::system_error(boost::asio::error::eof,
                                  incomplete_message(partial.size(), expected)),
      partial_(std::make_shared<const std::string>(std::move(partial))),
      expected_(expected) {}

limit_overrun_error::limit_overrun_error(const std::string& message, std::size_t consumed)
    : boost::system::system_error(boost::asio::error::not_found, message), consumed_(consumed) {}

// ---------------------------------------------------------------- stream_reader

// Marks the calling fiber as the reader for the scope of one call, which may switch: a
// second fiber would otherwise consume or move the buffer under the first one.
class stream_reader::reading {
  public:
    reading(stream_reader& r, const char* what) : r_(r) {
        if (r.stream_ == nullptr) {
            throw error(std::string("greenfiber: ") + what + " on a moved-from stream_reader");
        }
        if (std::this_thread::get_id() != r.hub_->thread_id()) {
            detail::throw_wrong_thread(what, *r.hub_);
        }
        if (r.reading_) {
            throw error(std::string("greenfiber: ") + what +
                        ": another fiber is already reading from this stream_reader (one "
                        "reader fiber at a time, as asyncio's StreamReader; guard it with a "
                        "greenfiber::mutex)");
        }
        r.reading_ = true;
    }
    ~reading() { r_.reading_ = false; }
    reading(const reading&) = delete;
    reading& operator=(const reading&) = delete;

  private:
    stream_reader& r_;
};

stream_reader::stream_reader(void* stream, const detail::stream_ops* ops, hub& h, std::size_t limit)
    : stream_(stream), ops_(ops), hub_(&h), limit_(limit) {
    if (limit == 0) throw error("greenfiber: stream_reader: the limit must be at least 1 byte");
}

stream_reader::stream_reader(stream_reader&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)),
      ops_(other.ops_),
      hub_(other.hub_),
      limit_(other.limit_),
      storage_(std::move(other.storage_)),
      begin_(std::exchange(other.begin_, 0)),
      end_(std::exchange(other.end_, 0)),
      eof_(other.eof_) {
    other.storage_.clear();
}

stream_reader& stream_reader::operator=(stream_reader&& other) noexcept {
    if (this != &other) {
        stream_ = std::exchange(other.stream_, nullptr);
        ops_ = other.ops_;
        hub_ = other.hub_;
        limit_ = other.limit_;
        storage_ = std::move(other.storage_);
        other.storage_.clear();
        begin_ = std::exchange(other.begin_, 0);
        end_ = std::exchange(other.end_, 0);
        eof_ = other.eof_;
        reading_ = false;
    }
    return *this;
}

stream_reader::~stream_reader() = default;

void stream_reader::fill(std::size_t want, deadline dl, boost::system::error_code& ec) {
    ec.clear();
    if (storage_.size() - end_ < want) {
        if (begin_ > 0) {
            std::memmove(storage_.data(), storage_.data() + begin_, size());
            end_ -= begin_;
            begin_ = 0;
        }
        if (storage_.size() - end_ < want) storage_.resize(end_ + want);
    }
    // The stream writes into storage_ while this fiber is parked; the reading guard keeps
    // every other call away from the buffer until it returns.
    const std::size_t n =
        ops_->read_some(stream_, boost::asio::buffer(storage_.data() + end_, want), dl, ec);
    end_ += n;
    if (ec == boost::asio::error::eof) {
        eof_ = true;
        ec.clear();
    }
}

std::string stream_reader::take(std::size_t n) {
    if (begin_ == 0 && n > keep_capacity && size() - n <= n) {
        // A large message that starts the storage (a long readexactly): hand the storage
        // over and copy the smaller rest, so that the message is not held twice.
        std::string rest(storage_.data() + n, size() - n);
        storage_.resize(n);
        std::string out = std::move(storage_);
        storage_ = std::move(rest);
        end_ = storage_.size();
        return out;
    }
    std::string out(storage_.data() + begin_, n);
    begin_ += n;
    if (begin_ == end_) {
        begin_ = end_ = 0;
        if (storage_.size() > keep_capacity) std::string().swap(storage_);
    } else if (storage_.size() > keep_capacity && size() < storage_.size() / 4) {
        // A few bytes left in a large storage: keep only them, so that one large message
        // does not pin its memory while the connection reads small ones.
        std::string rest(data());
        storage_ = std::move(rest);
        begin_ = 0;
        end_ = storage_.size();
    }
    return out;
}

std::size_t stream_reader::growth() const noexcept {
    // As much as is buffered: the storage at most doubles per read, so its size stays
    // within about twice the bytes that arrived, whatever count the caller asked for.
    return std::max(read_chunk, size());
}

bool stream_reader::pace(std::size_t& since_yield, std::size_t before, deadline dl,
                         boost::system::error_code& ec) {
    since_yield += size() - before;
    if (since_yield < yield_every) return true;
    since_yield = 0;
    yield_now();
    if (dl.is_set() && deadline::clock::now() >= dl.at()) {
        ec = boost::asio::error::timed_out;
        return false;
    }
    return true;
}

std::string stream_reader::take_all() {
    if (begin_ != 0) return take(size());
    // The bytes start the storage: hand the storage over instead of copying it.
    storage_.resize(end_);
    std::string out = std::move(storage_);
    storage_.clear();
    end_ = 0;
    return out;
}

stream_reader::until_status stream_reader::until(std::string_view separator, deadline dl,
                                                 boost::system::error_code& ec,
                                                 std::size_t& length) {
    ec.clear();
    if (separator.empty()) {
        throw error("greenfiber: stream_reader.readuntil(): the separator is empty");
    }
    if (separator.size() > limit_) {
        throw error("greenfiber: stream_reader.readuntil(): the separator (" +
                    std::to_string(separator.size()) + " bytes) is longer than the limit (" +
                    std::to_string(limit_) + " bytes)");
    }
    // Bytes before `offset` were searched and cannot start the separator; the search
    // resumes there, so a separator split across reads is found and no byte is searched
    // twice more than separator.size() - 1 times.
    std::size_t offset = 0;
    std::size_t since_yield = 0;  // a large limit lets a fast peer keep this loop busy
    for (;;) {
        if (size() >= separator.size()) {
            const std::size_t pos = data().find(separator, offset);
            if (pos != std::string_view::npos) {
                if (pos + separator.size() > limit_) {
                    length = pos;  // found, but the chunk is longer than the limit
                    return until_status::overrun;
                }
                length = pos + separator.size();
                return until_status::found;
            }
            offset = size() - separator.size() + 1;
        }
        // The buffer holds at most limit_ bytes: with the limit reached and no separator,
        // reading more would break that bound.
        if (size() >= limit_) {
            length = offset;
            return until_status::overrun;
        }
        if (eof_) return until_status::incomplete;
        const std::size_t before = size();
        fill(std::min(read_chunk, limit_ - size()), dl, ec);
        if (ec || !pace(since_yield, before, dl, ec)) return until_status::error;
    }
}

std::string stream_reader::read(std::ptrdiff_t n, deadline dl) {
    boost::system::error_code ec;
    std::string out = read(n, dl, ec);
    if (ec) throw_io(ec, "stream_reader.read()");
    return out;
}

std::string stream_reader::read(std::ptrdiff_t n, boost::system::error_code& ec) {
    return read(n, {}, ec);
}

std::string stream_reader::read(std::ptrdiff_t n, deadline dl, boost::system::error_code& ec) {
    reading guard(*this, "stream_reader.read()");
    ec.clear();
    if (n == 0) return {};
    if (n < 0) {
        std::size_t since_yield = 0;
        while (!eof_) {
            const std::size_t before = size();
            fill(growth(), dl, ec);
            if (ec) return {};
            if (!eof_ && !pace(since_yield, before, dl, ec)) return {};
        }
        return take_all();
    }
    const auto wanted = static_cast<std::size_t>(n);
    // A loop, not one fill: a stream may return no byte without an error (a socket does
    // not), and "" must mean the end of the stream.
    while (size() == 0 && !eof_) {
        // Bounded by the limit and by keep_capacity, never by `n` alone: the caller's count
        // may come from the peer.
        fill(std::min({std::max(read_chunk, wanted), limit_, keep_capacity}), dl, ec);
        if (ec) return {};
    }
    return take(std::min(wanted, size()));
}

std::string stream_reader::readline(deadline dl) {
    reading guard(*this, "stream_reader.readline()");
    boost::system::error_code ec;
    std::size_t length = 0;
    switch (until("\n", dl, ec, length)) {
        case until_status::found:
            return take(length);
        case until_status::incomplete:
            return take_all();
        case until_status::overrun:
            throw limit_overrun_error(
                "greenfiber: stream_reader.readline(): no end of line within the limit of " +
                    std::to_string(limit_) + " bytes (the bytes stay buffered)",
                length);
        case until_status::error:
            break;
    }
    throw_io(ec, "stream_reader.readline()");
}

std::string stream_reader::readline(boost::system::error_code& ec) {
    return readline({}, ec);
}

std::string stream_reader::readline(deadline dl, boost::system::error_code& ec) {
    reading guard(*this, "stream_reader.readline()");
    std::size_t length = 0;
    switch (until("\n", dl, ec, length)) {
        case until_status::found:
            return take(length);
        case until_status::incomplete:
            return take_all();
        case until_status::overrun:
            ec = boost::asio::error::not_found;
            return {};
        case until_status::error:
            break;
    }
    return {};
}

std::string stream_reader::readexactly(std::size_t n, deadline dl) {
    boost::system::error_code ec;
    std::string out = readexactly(n, dl, ec);
    if (ec == boost::asio::error::eof) throw incomplete_read_error(std::move(out), n);
    if (ec) throw_io(ec, "stream_reader.readexactly()");
    return out;
}

std::string stream_reader::readexactly(std::size_t n, boost::system::error_code& ec) {
    return readexactly(n, {}, ec);
}

std::string stream_reader::readexactly(std::size_t n, deadline dl, boost::system::error_code& ec) {
    reading guard(*this, "stream_reader.readexactly()");
    ec.clear();
    std::size_t since_yield = 0;
    while (size() < n) {
        if (eof_) {
            ec = boost::asio::error::eof;
            return take_all();
        }
        // The count may come from the peer (a length prefix), so the buffer grows with the
        // bytes that arrive, never to n ahead of them. Up to a chunk more within the
        // limit, so that a header and its body cost one read.
        const std::size_t room = limit_ > size() ? limit_ - size() : 0;
        const std::size_t before = size();
        fill(std::max(std::min(n - size(), growth()), std::min(read_chunk, room)), dl, ec);
        if (ec) return {};
        if (size() < n && !eof_ && !pace(since_yield, before, dl, ec)) return {};
    }
    return take(n);
}

std::string stream_reader::readuntil(std::string_view separator, deadline dl) {
    reading guard(*this, "stream_reader.readuntil()");
    boost::system::error_code ec;
    std::size_t length = 0;
    switch (until(separator, dl, ec, length)) {
        case until_status::found:
            return take(length);
        case until_status::incomplete:
            throw incomplete_read_error(take_all(), std::nullopt);
        case until_status::overrun:
            throw limit_overrun_error(
                "greenfiber: stream_reader.readuntil(): no separator within the limit of " +
                    std::to_string(limit_) + " bytes (the bytes stay buffered)",
                length);
        case until_status::error:
            break;
    }
    throw_io(ec, "stream_reader.readuntil()");
}

std::string stream_reader::readuntil(std::string_view separator, boost::system::error_code& ec) {
    return readuntil(separator, {}, ec);
}

std::string stream_reader::readuntil(std::string_view separator, deadline dl,
                                     boost::system::error_code& ec) {
    reading guard(*this, "stream_reader.readuntil()");
    std::size_t length = 0;
    switch (until(separator, dl, ec, length)) {
        case until_status::found:
            return take(length);
        case until_status::incomplete:
            ec = boost::asio::error::eof;
            return take_all();
        case until_status::overrun:
            ec = boost::asio::error::not_found;
            return {};
        case until_status::error:
            break;
    }
    return {};
}

// ---------------------------------------------------------------- stream_writer

// Marks the calling fiber as the one writing to the stream. On the way out (returned,
// failed or cancelled) it drops the unsent bytes if the writer broke or was closed
// meanwhile, and wakes the fibers waiting to drain so that one of them takes over.
class stream_writer::draining {
  public:
    explicit draining(stream_writer& w) noexcept : w_(w) { w.draining_ = true; }
    ~draining() {
        w_.draining_ = false;
        if (w_.broken_ || w_.closed_) w_.drop_unsent();
        w_.drainers_.signal_all();
    }
    draining(const draining&) = delete;
    draining& operator=(const draining&) = delete;

  private:
    stream_writer& w_;
};

stream_writer::stream_writer(void* stream, const detail::stream_ops* ops, hub& h)
    : stream_(stream), ops_(ops), hub_(&h) {}

stream_writer::stream_writer(stream_writer&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)),
      ops_(other.ops_),
      hub_(other.hub_),
      pending_(std::move(other.pending_)),
      sending_(std::move(other.sending_)),
      sent_(std::exchange(other.sent_, 0)),
      written_(std::exchange(other.written_, 0)),
      flushed_(std::exchange(other.flushed_, 0)),
      dropped_(std::exchange(other.dropped_, 0)),
      broken_(other.broken_),
      eof_(other.eof_),
      closed_(other.closed_) {
    other.pending_.clear();
    other.sending_.clear();
    other.closed_ = true;
}

stream_writer::~stream_writer() {
    if (stream_ == nullptr || closed_ || broken_ || buffer_size() == 0) return;
    hub_->report({"greenfiber: stream_writer destroyed with " + std::to_string(buffer_size()) +
                      " bytes never drained (call drain() or close() before; abort() drops "
                      "them on purpose)",
                  nullptr, nullptr, report_severity::warning, "stream"});
}

void stream_writer::check_thread(const char* what) const {
    if (stream_ == nullptr) {
        throw error(std::string("greenfiber: ") + what + " on a moved-from stream_writer");
    }
    if (std::this_thread::get_id() != hub_->thread_id()) detail::throw_wrong_thread(what, *hub_);
}

void stream_writer::drop_unsent() noexcept {
    dropped_ += pending_.size();
    pending_.clear();
    // A fiber parked in write_some points into sending_: the drainer drops it when it
    // wakes (see draining).
    if (!draining_) {
        dropped_ += sending_.size() - sent_;
        sending_.clear();
        sent_ = 0;
    }
}

void stream_writer::throw_error(const char* what, const boost::system::error_code& ec) const {
    std::string m = std::string("greenfiber: ") + what;
    if (dropped_ > 0) {
        m += ": " + std::to_string(dropped_) + " bytes written were never delivered";
    }
    throw boost::system::system_error(ec, m);
}

void stream_writer::write(std::string_view data) {
    check_thread("stream_writer.write()");
    if (broken_) throw_error("stream_writer.write()", broken_);
    if (closed_) throw error("greenfiber: stream_writer.write() after close()");
    if (eof_) throw error("greenfiber: stream_writer.write() after write_eof()");
    pending_.append(data);
    written_ += data.size();
}

void stream_writer::drain_impl(deadline dl, boost::system::error_code& ec) {
    ec.clear();
    const std::uint64_t target = written_;
    for (;;) {
        if (broken_) {
            ec = broken_;
            return;
        }
        if (flushed_ >= target) return;
        // The bytes were dropped by abort() or close() while this fiber waited.
        if (closed_) {
            ec = boost::asio::error::operation_aborted;
            return;
        }
        if (!draining_) break;
        // Another fiber is writing: it goes on until its own bytes are out, which may not
        // include ours; wait for it to finish and look again.
        detail::sync_waiter sw("a stream_writer's drain by another fiber");
        const deadline::clock::time_point at = dl.at();
        if (!detail::wait_in(drainers_, sw, dl.is_set() ? &at : nullptr)) {
            ec = boost::asio::error::timed_out;
            return;
        }
    }
    draining guard(*this);
    while (flushed_ < target) {
        if (sent_ == sending_.size()) {
            sending_.clear();
            sent_ = 0;
            if (sending_.capacity() > keep_capacity) std::string().swap(sending_);
            sending_.swap(pending_);  // flushed_ < target <= written_: pending_ has bytes
        }
        const std::size_t n = ops_->write_some(
            stream_, boost::asio::buffer(sending_.data() + sent_, sending_.size() - sent_), dl, ec);
        sent_ += n;
        flushed_ += n;
        if (!ec) continue;
        if (closed_) {
            ec = boost::asio::error::operation_aborted;
        } else if (ec != boost::asio::error::timed_out &&
                   ec != boost::asio::error::operation_aborted) {
            // The connection is gone: nothing buffered can be delivered any more.
            broken_ = ec;
        }
        return;
    }
}

void stream_writer::drain(deadline dl) {
    boost::system::error_code ec;
    drain(dl, ec);
    if (ec) throw_error("stream_writer.drain()", ec);
}

void stream_writer::drain(boost::system::error_code& ec) {
    drain({}, ec);
}

void stream_writer::drain(deadline dl, boost::system::error_code& ec) {
    check_thread("stream_writer.drain()");
    drain_impl(dl, ec);
}

void stream_writer::write_eof(deadline dl) {
    boost::system::error_code ec;
    write_eof(dl, ec);
    if (ec) throw_error("stream_writer.write_eof()", ec);
}

void stream_writer::write_eof(boost::system::error_code& ec) {
    write_eof({}, ec);
}

void stream_writer::write_eof(deadline dl, boost::system::error_code& ec) {
    check_thread("stream_writer.write_eof()");
    if (closed_) throw error("greenfiber: stream_writer.write_eof() after close()");
    ec.clear();
    if (eof_) return;
    // Until nothing is buffered: another fiber may write while this one waits, and its
    // bytes must go out before the end of the stream. No switch separates the last
    // check from the shutdown.
    do {
        drain_impl(dl, ec);
        if (ec) return;
    } while (buffer_size() > 0);
    ops_->shutdown_send(stream_, ec);
    if (!ec) eof_ = true;
}

void stream_writer::close(deadline dl) {
    boost::system::error_code ec;
    close(dl, ec);
    if (ec) throw_error("stream_writer.close()", ec);
}

void stream_writer::close(boost::system::error_code& ec) {
    close({}, ec);
}

void stream_writer::close(deadline dl, boost::system::error_code& ec) {
    check_thread("stream_writer.close()");
    ec.clear();
    if (closed_) return;
    auto finish = [this] {
        closed_ = true;
        drop_unsent();
        boost::system::error_code close_ec;
        ops_->close(stream_, close_ec);  // wakes a drainer still parked in write_some
        return close_ec;
    };
    try {
        while (!broken_ && buffer_size() > 0 && !ec) drain_impl(dl, ec);
    } catch (...) {
        (void)finish();  // closed whatever happened, as documented
        throw;
    }
    const boost::system::error_code close_ec = finish();
    if (!ec) ec = close_ec;
}

void stream_writer::abort() {
    check_thread("stream_writer.abort()");
    if (closed_) return;
    closed_ = true;
    drop_unsent();
    boost::system::error_code ignored;
    ops_->close(stream_, ignored);
}

stream_connection::stream_connection(tcp::socket s, std::size_t limit)
    : socket(std::make_unique<tcp::socket>(std::move(s))),
      reader(*socket, limit),
      writer(*socket) {}

stream_connection open_connection(std::string_view host, std::string_view service, deadline dl,
                                  std::size_t limit) {
    return stream_connection(create_connection(host, service, dl), limit);
}

}  // namespace greenfiber

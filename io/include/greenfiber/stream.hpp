#pragma once
/// \file
/// Buffered streams with asyncio's StreamReader / StreamWriter semantics over any greenfiber
/// stream socket (tcp::socket, unix_stream::socket, or a type with the same calls).
///
///     greenfiber::stream_reader in(sock);        // borrows `sock`
///     greenfiber::stream_writer out(sock);       // the same socket: one reads, one writes
///     std::string line = in.readline(5s);        // up to and including '\n'
///     std::string body = in.readexactly(length); // throws incomplete_read_error at EOF
///     out.write("HTTP/1.1 200 OK\r\n");          // buffers; never switches
///     out.drain();                               // hands every byte to the kernel
///
/// Reader. Every call first serves what is buffered and reads from the socket only when it
/// needs more. readline() and readuntil() never buffer more than `limit` bytes (64 KiB by
/// default, as asyncio): a peer that sends an endless line costs `limit` bytes of memory, not
/// more, and the call throws limit_overrun_error with the bytes left in the buffer.
/// The limit counts the separator too (asyncio lets a separator start at the limit and end
/// beyond it), so the bound is exact. No call sizes its buffer by a count ahead of the
/// data: a count may come from the peer (a length prefix), so readexactly(n) and read(-1)
/// grow the buffer as bytes arrive (at most doubling it per read) and cost what the peer
/// sent, not what it announced. A call that reads much without waiting (a fast peer) lets
/// the other fibers run once per MiB and checks its deadline then. Each call below states
/// the memory it can hold at most ("Memory:").
///
/// Writer. write() only appends to a buffer: it never switches, never touches the socket and
/// never fails for I/O reasons. Bytes leave in drain(), write_eof() and close(), which write
/// the whole buffer and return once the kernel has every byte. That is asyncio's pattern
/// `write(); await drain()` with its back-pressure (drain() waits while the peer does not
/// read, so a producer that drains after each write holds at most one write in memory), but
/// with a rule that cannot deadlock by surprise: asyncio's transport also sends in the
/// background, so a request written without drain() usually goes out there, but not when
/// the socket is full; here it always stays buffered until drain(). Call drain() before
/// waiting for a reply. (A background flusher would also own the write direction and have
/// nobody to report its errors to.)
///
/// Errors (Asio's convention, as socket.hpp): each blocking call has a throwing form and an
/// `error_code&` form, and takes an optional deadline that bounds the whole call
/// (`timed_out`). Without a deadline each wait on the socket uses the socket's default
/// timeout (set_timeout), if any. The throwing forms throw boost::system::system_error;
/// two conditions throw a subclass that carries asyncio's details:
///     incomplete_read_error   code eof        (asyncio's IncompleteReadError)
///     limit_overrun_error     code not_found  (asyncio's LimitOverrunError; Asio's
///                                              read_until reports a full buffer the same)
/// Both are runtime conditions of the data, not misuse, so they are system_errors (and so
/// std::runtime_errors), never greenfiber::error. Misuse (a second concurrent reader, a write
/// after close(), another thread) throws greenfiber::error in every form. Cancelling the task
/// throws cancelled_error in every form.
///
/// Nothing is lost silently. A reader call that fails (timeout, cancellation, reset) leaves
/// every byte it read in the buffer for the next call; only an end of stream hands the
/// partial bytes over (in the exception, or returned with `eof` in the error_code form). A
/// writer whose drain fails on a timeout or a cancellation keeps the unsent bytes for the
/// next drain(); a connection error (reset, broken pipe) breaks the writer: the unsent bytes
/// are dropped, drain() reports the error with their count, and every later write(),
/// drain(), write_eof() reports it again. A writer destroyed with bytes never drained
/// reports them to the hub's exception handler. Note that drain() returning means the kernel
/// has the bytes, not that the peer read them: a reset after that surfaces on the next
/// drain(), and only an acknowledgement in the protocol proves delivery.
///
/// Thread: thread-bound (the stream's hub). The stream is borrowed: it must outlive the
/// reader and the writer. One fiber reads at a time (as asyncio's StreamReader); several
/// fibers may write and drain at once.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"

namespace greenfiber {

/// The end of the stream came before readexactly() had its count or readuntil() its
/// separator (asyncio's IncompleteReadError). code() is boost::asio::error::eof. The partial
/// bytes were taken out of the reader's buffer and are here.
class incomplete_read_error : public boost::system::system_error {
  public:
    /// `partial`: the bytes read; `expected`: the count asked for, or none for readuntil().
    incomplete_read_error(std::string partial, std::optional<std::size_t> expected);

    /// The bytes read before the end of the stream. Switches: no.
    const std::string& partial() const noexcept { return *partial_; }
    /// The count readexactly() asked for; std::nullopt for readuntil() (asyncio's None).
    /// Switches: no.
    std::optional<std::size_t> expected() const noexcept { return expected_; }

  private:
    std::shared_ptr<const std::string> partial_;  // shared: copying an exception cannot throw
    std::optional<std::size_t> expected_;
};

/// readuntil() or readline() found no separator within the reader's limit (asyncio's
/// LimitOverrunError). code() is boost::asio::error::not_found. The data stays in the buffer:
/// read(consumed()) skips what cannot hold the start of a separator, or close the stream.
class limit_overrun_error : public boost::system::system_error {
  public:
    /// An error with `message`; `consumed` as consumed() returns it.
    limit_overrun_error(const std::string& message, std::size_t consumed);

    /// How many buffered bytes to skip before a separator can start (asyncio's `consumed`).
    /// Switches: no.
    std::size_t consumed() const noexcept { return consumed_; }

  private:
    std::size_t consumed_;
};

/// A stream a stream_reader can read: greenfiber's read_some with a deadline.
template <class S>
concept readable_stream = requires(S& s, const boost::asio::mutable_buffer& b, deadline dl,
                                   boost::system::error_code& ec) {
    { s.read_some(b, dl, ec) } -> std::convertible_to<std::size_t>;
};

/// A stream a stream_writer can write, half-close and close.
template <class S>
concept writable_stream = requires(S& s, const boost::asio::const_buffer& b, deadline dl,
                                   boost::system::error_code& ec) {
    { s.write_some(b, dl, ec) } -> std::convertible_to<std::size_t>;
    s.shutdown(boost::asio::socket_base::shutdown_send, ec);
    s.close(ec);
};

namespace detail {

/// The calls the reader and writer make on their stream, bound once per stream type so that
/// the buffering logic is compiled once (in stream.cpp), not per socket type.
struct stream_ops {
    std::size_t (*read_some)(void* s, const boost::asio::mutable_buffer& b, deadline dl,
                             boost::system::error_code& ec);
    std::size_t (*write_some)(void* s, const boost::asio::const_buffer& b, deadline dl,
                              boost::system::error_code& ec);
    void (*shutdown_send)(void* s, boost::system::error_code& ec);
    void (*close)(void* s, boost::system::error_code& ec);
};

template <readable_stream S>
inline constexpr stream_ops reader_ops = {
    [](void* s, const boost::asio::mutable_buffer& b, deadline dl, boost::system::error_code& ec)
        -> std::size_t { return static_cast<S*>(s)->read_some(b, dl, ec); },
    nullptr,
    nullptr,
    nullptr,
};

template <writable_stream S>
inline constexpr stream_ops writer_ops = {
    nullptr,
    [](void* s, const boost::asio::const_buffer& b, deadline dl, boost::system::error_code& ec)
        -> std::size_t { return static_cast<S*>(s)->write_some(b, dl, ec); },
    [](void* s, boost::system::error_code& ec) {
        static_cast<S*>(s)->shutdown(boost::asio::socket_base::shutdown_send, ec);
    },
    [](void* s, boost::system::error_code& ec) { static_cast<S*>(s)->close(ec); },
};

/// The hub a stream belongs to: its own for greenfiber sockets, else the calling thread's.
template <class S>
hub& home_of(S& s) {
    if constexpr (requires {
                      { s.home() } -> std::convertible_to<hub&>;
                  }) {
        return s.home();
    } else {
        return hub::current();
    }
}

}  // namespace detail

/// asyncio's StreamReader over a borrowed stream.
/// Thread: thread-bound. One fiber at a time may be inside a reading call.
class stream_reader {
  public:
    /// asyncio's default limit: 64 KiB.
    static constexpr std::size_t default_limit = std::size_t{64} * 1024;

    /// A reader of `s` (borrowed: it must outlive the reader) whose readline() and
    /// readuntil() buffer at most `limit` bytes. Switches: no.
    /// Throws: greenfiber::error if `limit` is 0.
    template <readable_stream Stream>
    explicit stream_reader(Stream& s, std::size_t limit = default_limit)
        : stream_reader(&s, &detail::reader_ops<Stream>, detail::home_of(s), limit) {}

    /// Takes over `other`'s stream and buffer; `other` is left unusable (its calls throw
    /// greenfiber::error). Moving a reader that a fiber is using is a bug. Switches: no.
    stream_reader(stream_reader&& other) noexcept;
    /// As the move constructor, after dropping this reader's own stream and buffer.
    /// Switches: no.
    stream_reader& operator=(stream_reader&& other) noexcept;
    ~stream_reader();

    /// Reads up to `n` bytes: what is buffered, or else what one read from the stream
    /// brings (at least one byte). Returns "" at the end of the stream, or when n == 0.
    /// With n < 0 (the default) reads until the end of the stream and returns everything
    /// (asyncio's read(-1); it buffers the whole stream).
    /// Memory: the buffer plus one read of at most min(max(16 KiB, n), limit(), 64 KiB);
    /// read(-1) the whole stream (bounded only by the peer: for trusted peers).
    /// Switches: only when the buffer is empty; read(-1) also once per MiB read.
    /// Throws: boost::system::system_error (timed_out; a connection error; the bytes of an
    /// unfinished read(-1) stay buffered); cancelled_error; greenfiber::error on misuse.
    [[nodiscard]] std::string read(std::ptrdiff_t n = -1, deadline dl = {});
    ///@{
    /// As read(n, dl); on error returns "" with `ec` set, the bytes staying buffered.
    [[nodiscard]] std::string read(std::ptrdiff_t n, boost::system::error_code& ec);
    [[nodiscard]] std::string read(std::ptrdiff_t n, deadline dl, boost::system::error_code& ec);
    ///@}

    /// Reads one line, up to and including the line feed. At the end of the stream returns
    /// the partial last line without one, then "". The line, its line feed included, must
    /// fit in limit() bytes.
    /// Memory: at most limit() bytes buffered.
    /// Switches: only when no whole line is buffered; also once per MiB read.
    /// Throws: limit_overrun_error (the bytes stay buffered: unlike asyncio, which drops
    /// them and raises ValueError, so that no byte is lost without the caller deciding);
    /// boost::system::system_error; cancelled_error; greenfiber::error on misuse.
    [[nodiscard]] std::string readline(deadline dl = {});
    ///@{
    /// As readline(dl); on error returns "" with `ec` set (not_found for an overrun).
    [[nodiscard]] std::string readline(boost::system::error_code& ec);
    [[nodiscard]] std::string readline(deadline dl, boost::system::error_code& ec);
    ///@}

    /// Reads exactly `n` bytes. Buffers up to n bytes even when n > limit().
    /// Memory: about twice the bytes received so far, plus 16 KiB (never n ahead of them).
    /// Switches: only when fewer than n bytes are buffered; also once per MiB read.
    /// Throws: incomplete_read_error with the partial bytes (consumed) and `n` if the
    /// stream ends first; boost::system::system_error (the bytes read stay buffered);
    /// cancelled_error; greenfiber::error on misuse.
    [[nodiscard]] std::string readexactly(std::size_t n, deadline dl = {});
    ///@{
    /// As readexactly(n, dl); at the end of the stream returns the partial bytes with
    /// `ec` = eof (as boost::asio::read); on other errors returns "".
    [[nodiscard]] std::string readexactly(std::size_t n, boost::system::error_code& ec);
    [[nodiscard]] std::string readexactly(std::size_t n, deadline dl,
                                          boost::system::error_code& ec);
    ///@}

    /// Reads up to and including the first `separator` (several bytes allowed; a separator
    /// split across reads is found). The result, separator included, must fit in limit()
    /// bytes.
    /// Memory: at most limit() bytes buffered.
    /// Switches: only when the separator is not buffered; also once per MiB read.
    /// Throws: limit_overrun_error (the bytes stay buffered); incomplete_read_error with
    /// the partial bytes (consumed) and no expected count at the end of the stream;
    /// boost::system::system_error; cancelled_error; greenfiber::error if `separator` is
    /// empty or longer than limit(), or on misuse.
    [[nodiscard]] std::string readuntil(std::string_view separator = "\n", deadline dl = {});
    ///@{
    /// As readuntil(separator, dl); at the end of the stream returns the partial bytes
    /// with `ec` = eof; on an overrun returns "" with `ec` = not_found (bytes buffered).
    [[nodiscard]] std::string readuntil(std::string_view separator, boost::system::error_code& ec);
    [[nodiscard]] std::string readuntil(std::string_view separator, deadline dl,
                                        boost::system::error_code& ec);
    ///@}

    /// Whether the stream has ended and every byte was read (asyncio's at_eof()).
    /// Switches: no.
    bool at_eof() const noexcept { return eof_ && size() == 0; }
    /// Bytes read from the stream and not yet returned. Switches: no.
    std::size_t buffer_size() const noexcept { return size(); }
    /// The bound given at construction. Switches: no.
    std::size_t limit() const noexcept { return limit_; }

  private:
    class reading;
    enum class until_status { found, incomplete, overrun, error };

    stream_reader(void* stream, const detail::stream_ops* ops, hub& h, std::size_t limit);

    std::size_t size() const noexcept { return end_ - begin_; }
    std::string_view data() const noexcept { return {storage_.data() + begin_, size()}; }
    void fill(std::size_t want, deadline dl, boost::system::error_code& ec);
    std::string take(std::size_t n);
    std::string take_all();
    /// How much one read may add to the buffer when the caller wants more than that.
    std::size_t growth() const noexcept;
    /// Counts the bytes a loop read; every yield_every of them yields and checks `dl`.
    /// Returns false (with `ec` = timed_out) once the deadline has passed.
    bool pace(std::size_t& since_yield, std::size_t before, deadline dl,
              boost::system::error_code& ec);
    until_status until(std::string_view separator, deadline dl, boost::system::error_code& ec,
                       std::size_t& length);

    void* stream_;                   // Borrowed: outlives the reader.
    const detail::stream_ops* ops_;  // Static: detail::reader_ops<Stream>.
    hub* hub_;                       // Borrowed: the stream's hub.
    std::size_t limit_;
    /// Owned. The buffered bytes are storage_[begin_, end_); storage_.size() is the space
    /// read_some may fill, so no byte is zeroed twice.
    std::string storage_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    bool eof_ = false;      // the stream reported eof; it is never read again
    bool reading_ = false;  // a fiber is inside a reading call (they may switch)
};

/// asyncio's StreamWriter over a borrowed stream.
/// Thread: thread-bound. Several fibers may write and drain concurrently: each drain()
/// returns once the bytes written before it are out (one fiber writes at a time, the others
/// wait for it and take over if it gives up).
class stream_writer {
  public:
    /// A writer of `s` (borrowed: it must outlive the writer). Switches: no.
    template <writable_stream Stream>
    explicit stream_writer(Stream& s)
        : stream_writer(&s, &detail::writer_ops<Stream>, detail::home_of(s)) {}

    /// Takes over `other`'s stream and buffer; `other` is left unusable (its calls throw
    /// greenfiber::error). Moving a writer that fibers are using is a bug. Switches: no.
    stream_writer(stream_writer&& other) noexcept;
    stream_writer& operator=(stream_writer&& other) = delete;
    /// Leaves the stream open (it is borrowed). Does not switch, so it cannot flush: bytes
    /// never drained are reported to the hub's exception handler (call close() first, or
    /// abort() to drop them on purpose). Switches: no.
    ~stream_writer();

    /// Appends `data` to the buffer. Memory grows until the next drain(): a producer
    /// bounds it by draining after each write (or each few).
    /// Switches: no.   Throws: boost::system::system_error with the error that broke the
    /// writer; greenfiber::error after write_eof() or close(), or from another thread.
    void write(std::string_view data);
    /// write() of each element of `lines` in order (asyncio's writelines).
    /// Switches: no.   Throws: as write().
    template <std::ranges::input_range R>
    requires std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>
    void writelines(R&& lines) {
        for (auto&& line : lines) write(std::string_view(line));
    }

    ///@{
    /// Writes every byte buffered before the call and returns once the kernel has them,
    /// waiting as long as the peer does not read (the back-pressure). Returns at once if
    /// they are already out. On a timeout or cancellation the bytes not yet written stay
    /// buffered for the next drain(); on a connection error the writer breaks (see the
    /// file comment).
    /// Switches: only when something is buffered.
    /// Throws: boost::system::system_error (timed_out; connection_reset, broken_pipe...,
    /// with the count of bytes dropped in what()); cancelled_error; greenfiber::error from
    /// another thread.
    /// The error_code overloads report I/O errors in `ec` instead of throwing them.
    void drain(deadline dl = {});
    void drain(boost::system::error_code& ec);
    void drain(deadline dl, boost::system::error_code& ec);
    ///@}

    ///@{
    /// drain(), then half-closes the stream (shutdown_send: the peer reads the end of the
    /// stream after the last byte; the other direction stays open). If the drain fails
    /// nothing is shut down and write_eof() may be called again. Later write()s are misuse.
    /// Switches: only when something is buffered.   Throws: as drain(); a shutdown error;
    /// greenfiber::error after close().
    /// The error_code overloads report I/O errors in `ec` instead of throwing them.
    void write_eof(deadline dl = {});
    void write_eof(boost::system::error_code& ec);
    void write_eof(deadline dl, boost::system::error_code& ec);
    ///@}

    ///@{
    /// drain(), then closes the stream, whatever the drain did: when close() returns or
    /// throws, the stream is closed and bytes that could not be written are dropped (the
    /// exception says how many). A reader waiting on the same stream wakes with
    /// operation_aborted. Idempotent.
    /// Switches: only when something is buffered.   Throws: as drain(); a close error.
    /// The error_code overloads report I/O errors in `ec` instead of throwing them.
    void close(deadline dl = {});
    void close(boost::system::error_code& ec);
    void close(deadline dl, boost::system::error_code& ec);
    ///@}

    /// Drops the buffered bytes and closes the stream now (asyncio's transport.abort()).
    /// Fibers inside drain() wake with operation_aborted. Idempotent.
    /// Switches: no.   Throws: greenfiber::error from another thread.
    void abort();

    /// Whether close() or abort() was called (asyncio's is_closing()). Switches: no.
    bool is_closing() const noexcept { return closed_; }
    /// Bytes written and not yet handed to the kernel. Switches: no.
    std::size_t buffer_size() const noexcept {
        return static_cast<std::size_t>(written_ - flushed_ - dropped_);
    }

  private:
    class draining;

    stream_writer(void* stream, const detail::stream_ops* ops, hub& h);

    void check_thread(const char* what) const;
    void drain_impl(deadline dl, boost::system::error_code& ec);
    void drop_unsent() noexcept;
    [[noreturn]] void throw_error(const char* what, const boost::system::error_code& ec) const;

    void* stream_;                   // Borrowed: outlives the writer; null once moved from.
    const detail::stream_ops* ops_;  // Static: detail::writer_ops<Stream>.
    hub* hub_;                       // Borrowed: the stream's hub.
    /// Owned buffers. write() appends to pending_; the draining fiber writes from
    /// sending_[sent_, size) and swaps pending_ in when that is empty. write_some may park
    /// with a pointer into sending_, so nothing but the drainer touches it.
    std::string pending_;
    std::string sending_;
    std::size_t sent_ = 0;
    /// Counters over the writer's life. The stream is [flushed][dropped][buffered]: bytes
    /// are dropped only when the writer breaks or closes, after which nothing is written.
    std::uint64_t written_ = 0;         // bytes ever passed to write()
    std::uint64_t flushed_ = 0;         // bytes handed to the kernel
    std::uint64_t dropped_ = 0;         // bytes discarded by a connection error, close() or abort()
    boost::system::error_code broken_;  // the connection error that broke the writer
    bool draining_ = false;             // a fiber is inside write_some
    bool eof_ = false;                  // write_eof() succeeded
    bool closed_ = false;               // close() or abort() was called
    detail::wait_list drainers_;        // fibers waiting for the drainer to finish
};

/// A connection with its buffered reader and writer (what asyncio's open_connection returns).
/// Owns the socket; members are destroyed writer first, so undrained bytes are reported
/// while the socket is still there. Movable: the socket stays where it is.
struct stream_connection {
    /// The socket, on the heap so that reader and writer keep its address when this moves.
    std::unique_ptr<tcp::socket> socket;
    /// Reads from *socket.
    stream_reader reader;
    /// Writes to *socket.
    stream_writer writer;

    /// Takes `s`; the reader's limit is `limit`. Switches: no.
    explicit stream_connection(tcp::socket s, std::size_t limit = stream_reader::default_limit);
};

/// asyncio's open_connection(): resolves `host`, connects (create_connection in net.hpp)
/// and wraps the socket. `dl` bounds resolution and connection.
/// Switches: yes.   Throws: boost::system::system_error naming host and service;
///                  cancelled_error.
stream_connection open_connection(std::string_view host, std::string_view service, deadline dl = {},
                                  std::size_t limit = stream_reader::default_limit);

}  // namespace greenfiber

// A mutational fuzz test of the HTTP server's request handling (http::serve_connection).
//
// Why a generator in GoogleTest and not a libFuzzer target: the build is Meson with g++, and
// the fuzz run must be part of the default suite in both of its builds (plain and
// ASan+UBSan). libFuzzer needs clang and the whole library rebuilt with
// -fsanitize=fuzzer, a third build that the README's test command does not make; and the
// invariants below need the hub, real loopback sockets and the io_checked fixture, which a
// libFuzzer callback (one input per call, no fiber context) cannot give. A seeded
// generator is deterministic: a failure names its seed and round, and replays with them.
//
// Each round builds one connection's input: one to four pipelined requests that are valid
// (the corpus: methods, targets, HTTP/1.0 and 1.1, Content-Length and chunked bodies with
// extensions and trailers, Expect: 100-continue, Connection: close), and in most rounds
// mutates it (bytes flipped, inserted, deleted or repeated past the server's limits;
// framing fields added: Transfer-Encoding, a second Content-Length, obs-fold, bare LF,
// Expect; chunk sizes changed; the input cut short). It writes the input in random
// pieces with a turn of the hub between them (so that the server's reads split it at
// random points), half-closes, and reads the answer until the server closes. Invariants
// per round:
//  - no crash, no sanitizer report, no leak (the ASan build runs this same test);
//  - every byte the server sent parses with Beast as a sequence of complete responses
//    (the ones to HEAD without a body), one per request the handler saw, 1xx interim
//    answers allowed, plus at most one error answer (400, 413, 417, 431 or 501 with
//    Connection: close) after them;
//  - every request the handler saw is well framed per RFC 9112 §6: HTTP/1.0 or 1.1, not
//    both Transfer-Encoding and Content-Length, Transfer-Encoding only in 1.1 and only
//    "chunked", a body of exactly its Content-Length;
//  - an unmutated input is answered request by request, and the handler sees exactly the
//    requests that were sent, in order, with their bodies;
//  - the server closes the connection after the client's half-close (it neither hangs nor
//    keeps reading), within a deadline far beyond what a round takes;
//  - what the server held for the connection stays within its documented limits: each
//    request's fields within 2 * header_limit + buffer_limit bytes (head and trailer),
//    each body within body_limit (the limits are set small so that mutated inputs cross
//    them often);
//  - at the end, the hub's internal lists are empty (io_checked).
//
// Default run: 20 000 rounds, a few seconds (GREENFIBER_HTTP_FUZZ_ROUNDS overrides the
// number of rounds, GREENFIBER_HTTP_FUZZ_SEED the seed). Long run: `meson test -C build
// --setup long long/io/http_fuzz` (GREENFIBER_LONG=1): 100 000 rounds per repeat, ten
// repeats, each on another seed (GoogleTest's random seed, which changes per repeat, is
// added to it). Or as long as you like:
//     GREENFIBER_HTTP_FUZZ_ROUNDS=1000000 build/tests/io_http_fuzz_test
// A failure prints the seed and round: rerun with GREENFIBER_HTTP_FUZZ_SEED=<seed> and at
// least that many rounds.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include "greenfiber/http.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "long_run.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using boost::system::error_code;

namespace {

class HttpFuzz : public greenfiber::testing::io_checked {};

// Small limits, so that mutations cross them often.
http::server_options fuzz_options() {
    http::server_options o;
    o.header_limit = 2048;
    o.body_limit = 4096;
    o.buffer_limit = 1024;
    o.idle_timeout = 10s;
    o.io_timeout = 10s;
    return o;
}

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    return std::strtoull(v, nullptr, 10);
}

// A request as the generator built it, and as the handler should see it if unmutated.
struct sent_request {
    std::string bytes;
    std::string seen;  // "METHOD target body"
    bool has_body_to_continue = false;
};

struct generator {
    std::mt19937_64 rng;

    std::size_t below(std::size_t n) { return n == 0 ? 0 : rng() % n; }
    bool chance(int percent) { return below(100) < static_cast<std::size_t>(percent); }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[below(v.size())];
    }

    std::string random_text(std::size_t n, std::string_view alphabet) {
        std::string s;
        for (std::size_t i = 0; i < n; ++i) s += alphabet[below(alphabet.size())];
        return s;
    }

    sent_request request(int index, bool last) {
        static const std::vector<std::string> methods = {"GET",    "HEAD",    "POST",  "PUT",
                                                         "DELETE", "OPTIONS", "PATCH", "TRACE"};
        const std::string method = pick(methods);
        const bool http10 = chance(10);
        const std::string target = "/r" + std::to_string(index) +
                                   (chance(30) ? "?q=" + random_text(below(20), "abc%20=&") : "");
        std::string head = method + " " + target + (http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
        if (!http10 || chance(50)) head += "Host: example.test\r\n";
        for (std::size_t i = below(4); i > 0; --i) {
            head += "X-F" + std::to_string(i) + ": " +
                    random_text(below(60), "abcdefghijklmnopqrstuvwxyz0123456789 ,;=\"") + "\r\n";
        }
        std::string body;
        const bool with_body =
            method == "POST" || method == "PUT" || method == "PATCH" || chance(10);
        const bool chunked = with_body && !http10 && chance(40);
        std::string framing;
        if (with_body) {
            body = random_text(below(chance(10) ? 3000 : 200), "abcdefghijklmnopqrstuvwxyz\r\n ");
            if (chunked) {
                head += "Transfer-Encoding: chunked\r\n";
                std::size_t at = 0;
                while (at < body.size()) {
                    const std::size_t n = std::min(body.size() - at, 1 + below(300));
                    char size[32];
                    std::snprintf(size, sizeof size, chance(50) ? "%zx" : "%zX", n);
                    framing += size;
                    if (chance(20)) framing += ";ext=" + random_text(1 + below(20), "abc");
                    framing += "\r\n" + body.substr(at, n) + "\r\n";
                    at += n;
                }
                framing += "0\r\n";
                if (chance(20)) framing += "X-Trailer: " + random_text(below(30), "xyz") + "\r\n";
                framing += "\r\n";
            } else {
                head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
                framing = body;
            }
        } else if (chance(20)) {
            head += "Content-Length: 0\r\n";
        }
        const bool expect = with_body && !http10 && chance(15);
        if (expect) head += "Expect: 100-continue\r\n";
        if (last && chance(50)) head += http10 ? "" : "Connection: close\r\n";
        if (http10 && !last) head += "Connection: keep-alive\r\n";
        head += "\r\n";
        return {head + framing, method + " " + target + " " + body,
                expect && (chunked || !body.empty())};
    }

    // One of the mutations; each keeps the input a plausible near-miss of HTTP.
    void mutate(std::string& in) {
        static const std::vector<std::string> fields = {
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Content-Length: 5\r\n",
            "Content-Length: 0\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 99999999\r\n",
            "Expect: 100-continue\r\n",
            "Expect: nothing\r\n",
            " folded\r\n",
            "\tfolded\r\n",
            "X-Bare: lf\n",
            "Connection: close\r\n",
            "Connection: keep-alive\r\n",
            "Host: a\r\nHost: b\r\n",
            ": empty-name\r\n",
            "Bad Name: x\r\n",
            "\r\n",
            "0\r\n\r\n",
            "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"};
        static const std::vector<std::string> bytes = {
            "\r",   "\n",   " ",    "\t", ":", "0", "f", ";", ",", "\"", std::string(1, '\0'),
            "\x7f", "\x80", "\xff", "-",  "+"};
        if (in.empty()) {
            in = pick(fields);
            return;
        }
        const std::size_t at = below(in.size() + 1);
        switch (below(9)) {
            case 0:  // flip a byte
                if (at < in.size()) in[at] = static_cast<char>(in[at] ^ (1u << below(8)));
                break;
            case 1:  // insert a byte that means something to a parser
                in.insert(at, pick(bytes));
                break;
            case 2:  // delete a range
                in.erase(std::min(at, in.size()), below(16) + 1);
                break;
            case 3: {  // repeat a range
                const std::string piece = in.substr(std::min(at, in.size()), below(32) + 1);
                in.insert(at, piece);
                break;
            }
            case 4: {  // a field line at a line start
                const auto nl = in.find('\n', std::min(at, in.size() - 1));
                in.insert(nl == std::string::npos ? in.size() : nl + 1, pick(fields));
                break;
            }
            case 5: {  // a run past a limit: a long field, chunk extension or size line
                const std::size_t n = chance(50) ? 1000 + below(1500) : 3000 + below(6000);
                in.insert(at, std::string(n, pick(std::vector<char>{'a', '0', ' ', ';', 'f'})));
                break;
            }
            case 6: {  // a number changed: a Content-Length or a chunk size
                const auto digit = in.find_first_of("0123456789abcdefABCDEF", at);
                if (digit != std::string::npos) {
                    in.replace(digit, 1, std::to_string(below(chance(50) ? 10 : 100000)));
                }
                break;
            }
            case 7:  // cut short
                in.resize(at);
                break;
            default:  // swap two lines' line ends for bare LFs
                for (auto crlf = in.find("\r\n", at); crlf != std::string::npos && below(3) != 0;
                     crlf = in.find("\r\n", crlf + 1)) {
                    in.erase(crlf, 1);
                }
                break;
        }
    }
};

// What the handler saw, with any framing rule it found broken.
struct observed {
    std::vector<std::string> seen;
    std::vector<bool> head;  // per seen request: was it HEAD
    std::vector<std::string> violations;
};

void check_request(const http::request& req, const http::server_options& opts, observed& o) {
    const auto note = [&](const std::string& what) {
        o.violations.push_back(what + " in " + std::string(req.method_string()) + " " +
                               std::string(req.target()));
    };
    if (req.version() != 10 && req.version() != 11)
        note("version " + std::to_string(req.version()));
    const bool te = req.count(http::field::transfer_encoding) > 0;
    const bool cl = req.count(http::field::content_length) > 0;
    if (te && cl) note("Transfer-Encoding and Content-Length");
    if (te && req.version() < 11) note("Transfer-Encoding in HTTP/1.0");
    if (te) {
        // All its fields as one list; empty elements do not count (RFC 9110 §5.6.1).
        std::string codings;
        const auto [first, last] = req.equal_range(http::field::transfer_encoding);
        for (auto it = first; it != last; ++it) {
            for (const auto c : bhttp::token_list(it->value())) {
                codings += (codings.empty() ? "" : ",") + std::string(c);
            }
        }
        if (!boost::beast::iequals(codings, "chunked")) {
            note("Transfer-Encoding '" + codings + "'");
        }
    }
    if (cl) {
        const auto value = req[http::field::content_length];
        // A repeated equal value ("5, 5") is that value (RFC 9112 §6.3).
        const std::string first(value.substr(0, value.find(',')));
        if (first.empty() || first.find_first_not_of("0123456789 ") != std::string::npos ||
            std::stoull(first) != req.body().size()) {
            note("Content-Length '" + std::string(value) + "' for a body of " +
                 std::to_string(req.body().size()));
        }
    }
    if (!te && !cl && !req.body().empty()) note("a body without framing");
    if (req.body().size() > opts.body_limit) note("a body past body_limit");
    std::size_t field_bytes = 0;
    for (const auto& f : req) field_bytes += f.name_string().size() + f.value().size() + 4;
    // The head's fields came whole within header_limit, the trailer's within the buffer
    // (header_limit + buffer_limit): http.hpp's "Memory".
    if (field_bytes > 2 * opts.header_limit + opts.buffer_limit) note("fields past the limits");
    if (req.method() == http::verb::unknown && req.method_string().empty()) note("no method");
}

// Parses `bytes` as the server's answers to the requests in `o`; "" if they are a valid
// sequence, else what is wrong.
std::string check_responses(std::string_view bytes, const observed& o, unsigned& closing_error) {
    std::size_t finals = 0;
    closing_error = 0;
    while (!bytes.empty()) {
        if (finals > o.seen.size()) return "bytes after the error answer";
        bhttp::response_parser<bhttp::string_body> p;
        p.eager(true);
        if (finals < o.seen.size() && o.head[finals]) p.skip(true);
        error_code ec;
        while (!p.is_done()) {
            const std::size_t n = p.put(asio::buffer(bytes.data(), bytes.size()), ec);
            bytes.remove_prefix(n);
            if (ec == bhttp::error::need_more && n == 0) return "a response cut short";
            if (ec && ec != bhttp::error::need_more) return "unparsable response: " + ec.message();
        }
        const unsigned code = p.get().result_int();
        if (code >= 100 && code < 200) {
            if (code != 100) return "interim " + std::to_string(code);
            continue;
        }
        if (finals == o.seen.size()) {
            // The one answer for a request the handler never saw: an error, then close.
            static const std::array<unsigned, 5> errors = {400, 413, 417, 431, 501};
            if (std::find(errors.begin(), errors.end(), code) == errors.end()) {
                return "unexpected status " + std::to_string(code) + " for a rejected request";
            }
            if (p.get().keep_alive()) return "an error answer without Connection: close";
            closing_error = code;
        } else if (code != 200) {
            return "status " + std::to_string(code) + " for a request the handler answered";
        }
        ++finals;
    }
    if (finals < o.seen.size()) return "fewer responses than handled requests";
    return "";
}

TEST_F(HttpFuzz, ServerHandlesMutatedRequestStreams) {
    const std::uint64_t seed = env_number(
        "GREENFIBER_HTTP_FUZZ_SEED",
        20261206 +
            (greenfiber::testing::long_run()
                 ? static_cast<std::uint64_t>(::testing::UnitTest::GetInstance()->random_seed())
                 : 0));
    // Fewer under the sanitizers (several times slower there), where the check's time goes.
#if defined(__SANITIZE_ADDRESS__)
    constexpr int default_rounds = 6000;
#else
    constexpr int default_rounds = 20000;
#endif
    const std::uint64_t rounds =
        env_number("GREENFIBER_HTTP_FUZZ_ROUNDS",
                   static_cast<std::uint64_t>(greenfiber::testing::rounds(default_rounds, 100000)));
    const http::server_options opts = fuzz_options();
    observed o;
    server<tcp::protocol> srv(
        tcp::acceptor(tcp::endpoint(asio::ip::address_v4::loopback(), 0)), [&](tcp::socket s) {
            http::serve_connection(
                s,
                [&](const http::request& req) {
                    check_request(req, opts, o);
                    o.seen.push_back(std::string(req.method_string()) + " " +
                                     std::string(req.target()) + " " + req.body());
                    o.head.push_back(req.method() == http::verb::head);
                    return http::make_response(req, http::status::ok, "ok");
                },
                opts);
        });
    auto loop = srv.start();
    const auto endpoint = srv.local_endpoint();
    generator gen{std::mt19937_64(seed)};
    std::size_t mutated = 0, rejected = 0, answered = 0;
    std::map<unsigned, std::size_t> rejected_with;  // status → rounds
    for (std::uint64_t round = 0; round < rounds; ++round) {
        SCOPED_TRACE("GREENFIBER_HTTP_FUZZ_SEED=" + std::to_string(seed) + ", round " +
                     std::to_string(round));
        const int n = 1 + static_cast<int>(gen.below(4));
        std::string input;
        std::vector<std::string> expected;
        for (int i = 0; i < n; ++i) {
            const sent_request r = gen.request(i, i == n - 1);
            input += r.bytes;
            expected.push_back(r.seen);
        }
        const bool mutate = gen.chance(75);
        if (mutate) {
            ++mutated;
            for (std::size_t m = 1 + gen.below(3); m > 0; --m) gen.mutate(input);
        }
        o = {};
        tcp::socket c;
        c.connect(endpoint);
        std::string answer;
        error_code rec;
        auto reader = spawn([&] {
            std::array<char, 4096> buf{};
            const deadline dl(30s);
            while (!rec) answer.append(buf.data(), c.read_some(asio::buffer(buf), dl, rec));
        });
        for (std::size_t at = 0; at < input.size();) {
            const std::size_t piece =
                std::min(input.size() - at, 1 + gen.below(gen.chance(50) ? 8 : 512));
            error_code wec;
            c.write(asio::buffer(input.data() + at, piece), 10s, wec);
            if (wec) break;  // the server closed early (an error answer)
            at += piece;
            if (gen.chance(30)) yield_now();
        }
        error_code sec;
        c.shutdown(asio::socket_base::shutdown_send, sec);
        reader.get();
        ASSERT_NE(rec, asio::error::timed_out) << "the server neither answered nor closed";
        unsigned closing_error = 0;
        const std::string wrong = check_responses(answer, o, closing_error);
        EXPECT_EQ(wrong, "") << "input:\n" << input << "\nanswer:\n" << answer;
        EXPECT_EQ(o.violations, std::vector<std::string>{}) << "input:\n" << input;
        if (!mutate) {
            EXPECT_EQ(o.seen, expected) << "input:\n" << input << "\nanswer:\n" << answer;
            EXPECT_EQ(closing_error, 0u) << answer;
        }
        if (closing_error != 0) ++rejected_with[closing_error];
        rejected += closing_error != 0 ? 1 : 0;
        answered += o.seen.size();
        if (::testing::Test::HasFailure()) break;
    }
    srv.stop(1s);
    loop.get();
    // The generator must reach both sides of the server: requests handled and rejected.
    EXPECT_GT(answered, rounds / 2);
    EXPECT_GT(rejected, mutated / 20);
    // And the limits: past header_limit (431), past body_limit or the buffer (413).
    if (rounds >= 1000) {
        EXPECT_GT(rejected_with[431], 0u);
        EXPECT_GT(rejected_with[413], 0u);
    }
    std::string statuses;
    for (const auto& [code, n] : rejected_with) {
        statuses += " " + std::to_string(code) + ":" + std::to_string(n);
    }
    std::printf("http fuzz: %llu rounds (%zu mutated), %zu requests handled, %zu rejected (%s )\n",
                static_cast<unsigned long long>(rounds), mutated, answered, rejected,
                statuses.c_str());
}

}  // namespace

// greenfiber's HTTP server as clients nobody here wrote see it (curl, Python's http.client,
// ApacheBench), and greenfiber's client against servers that misbehave on purpose.
//
// Each external client runs as a child process with its output in temporary files; the
// test polls for its end on the hub (so the server in this process keeps serving) and
// kills it by its PID once its bound has passed. A missing tool is a failure that names
// the Debian package (scripts/setup-deps installs them all), never a skip.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>

#include "greenfiber/http.hpp"
#include "greenfiber/task.hpp"
#include "http_support.hpp"
#include "io_check.hpp"

extern char** environ;

using namespace greenfiber;
using greenfiber::testing::running_server;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class HttpClients : public greenfiber::testing::io_checked {};

// Answers "METHOD target body-size" and records what it saw.
struct echo_server {
    std::vector<std::string> seen;
    running_server srv{[this](const http::request& req) {
        std::string line = std::string(req.method_string()) + " " + std::string(req.target()) +
                           " " + std::to_string(req.body().size());
        seen.push_back(line);
        return http::make_response(req, http::status::ok, line + "\n");
    }};
};

// The path of `tool` on PATH (or among `preferred`, tried first), or "" after a failure
// that names the package providing it.
std::string find_tool(const std::string& tool, const std::string& package,
                      const std::vector<std::string>& preferred = {}) {
    for (const auto& p : preferred) {
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const std::string p = dir + "/" + tool;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    ADD_FAILURE() << tool << " not found on PATH: install the Debian package '" << package
                  << "' (scripts/setup-deps does)";
    return "";
}

std::string python() {
    // Debian's interpreter first; any python3 has http.client and socket.
    return find_tool("python3", "python3", {"/usr/bin/python3"});
}

struct child_result {
    int exit_code = -1;  // -1: killed at its bound, or did not start
    std::string out;
    std::string err;
};

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// Runs `argv` as a child process, stdin from /dev/null, stdout and stderr to temporary
// files. Polls for its end every few milliseconds, letting the hub run meanwhile; past
// `bound` kills it (SIGKILL, by its PID) and reaps it. Switches: yes.
child_result run_child(const std::vector<std::string>& argv, std::chrono::seconds bound = 30s) {
    child_result r;
    char out_name[] = "/tmp/greenfiber-http-clients-out-XXXXXX";
    char err_name[] = "/tmp/greenfiber-http-clients-err-XXXXXX";
    const int out_fd = ::mkstemp(out_name);
    const int err_fd = ::mkstemp(err_name);
    if (out_fd < 0 || err_fd < 0) {
        ADD_FAILURE() << "mkstemp failed";
        return r;
    }
    posix_spawn_file_actions_t fa;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    ::posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    ::posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    ::posix_spawn_file_actions_destroy(&fa);
    ::close(out_fd);
    ::close(err_fd);
    if (rc != 0) {
        ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(rc);
    } else {
        const auto until = std::chrono::steady_clock::now() + bound;
        int status = 0;
        for (;;) {
            const pid_t done = ::waitpid(pid, &status, WNOHANG);
            if (done == pid) {
                if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
                break;
            }
            if (std::chrono::steady_clock::now() > until) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, &status, 0);
                ADD_FAILURE() << argv[0] << " still ran after " << bound.count() << " s: killed";
                break;
            }
            sleep(5ms);
        }
    }
    r.out = slurp(out_name);
    r.err = slurp(err_name);
    ::unlink(out_name);
    ::unlink(err_name);
    return r;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1)) {
        ++n;
    }
    return n;
}

// ---- curl

TEST_F(HttpClients, CurlGets) {
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    const child_result r = run_child({curl, "-sS", "--max-time", "20", es.srv.url("/a")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "GET /a 0\n");
}

TEST_F(HttpClients, CurlHeadFindsNoExcessAndReusesTheConnection) {
    // RFC 9110 §9.3.2: a body after the head of a HEAD response is what curl calls "Excess
    // found"; it would be read as the start of the next response.
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    const child_result r = run_child(
        {curl, "-sS", "-v", "--max-time", "20", "-I", es.srv.url("/h1"), es.srv.url("/h2")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("Excess found")));
    EXPECT_THAT(r.err, HasSubstr("Re-using existing connection"));
    EXPECT_EQ(count(r.out, "HTTP/1.1 200 OK"), 2u) << r.out;
    EXPECT_THAT(r.out, HasSubstr("Content-Length: 11"));  // "HEAD /h1 0\n"'s length
    EXPECT_EQ(es.seen, (std::vector<std::string>{"HEAD /h1 0", "HEAD /h2 0"}));
    EXPECT_EQ(es.srv.srv.served(), 1u);
}

TEST_F(HttpClients, CurlReusesAKeptAliveConnection) {
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    const child_result r =
        run_child({curl, "-sS", "-v", "--max-time", "20", es.srv.url("/1"), es.srv.url("/2")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "GET /1 0\nGET /2 0\n");
    EXPECT_THAT(r.err, HasSubstr("Re-using existing connection"));
    EXPECT_EQ(es.srv.srv.served(), 1u);
}

TEST_F(HttpClients, CurlHttp10GetsAnHttp10AnswerAndAClose) {
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    const child_result r = run_child({curl, "-sS", "-v", "--http1.0", "--max-time", "20",
                                      es.srv.url("/old"), es.srv.url("/old2")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "GET /old 0\nGET /old2 0\n");
    EXPECT_THAT(r.err, HasSubstr("< HTTP/1.0 200 OK"));
    EXPECT_THAT(r.err, Not(HasSubstr("Re-using existing connection")));
    EXPECT_EQ(es.srv.srv.served(), 2u);
}

TEST_F(HttpClients, CurlConnectionCloseIsHonoured) {
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    const child_result r = run_child({curl, "-sS", "-v", "--max-time", "20", "-H",
                                      "Connection: close", es.srv.url("/c1"), es.srv.url("/c2")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "GET /c1 0\nGET /c2 0\n");
    EXPECT_EQ(count(r.err, "< Connection: close"), 2u) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("Re-using existing connection")));
    EXPECT_EQ(es.srv.srv.served(), 2u);
}

TEST_F(HttpClients, CurlUploadsWithExpectGetA100) {
    // curl sends Expect: 100-continue with a large upload and waits up to a second for the
    // 100 before sending the body anyway ("Done waiting for 100-continue"). The 100 in its
    // log is the proof that it did not wait.
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    char name[] = "/tmp/greenfiber-http-upload-XXXXXX";
    const int fd = ::mkstemp(name);
    ASSERT_GE(fd, 0);
    const std::string body(512 * 1024, 'u');
    ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    ::close(fd);
    const child_result r =
        run_child({curl, "-sS", "-v", "--max-time", "20", "-H", "Expect: 100-continue",
                   "--data-binary", std::string("@") + name, es.srv.url("/up"), "--next", "-sS",
                   "-v", "--max-time", "20", "-T", name, es.srv.url("/put")});
    ::unlink(name);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "POST /up 524288\nPUT /put 524288\n");
    EXPECT_EQ(count(r.err, "> Expect: 100-continue"), 2u) << r.err;
    EXPECT_EQ(count(r.err, "< HTTP/1.1 100 Continue"), 2u) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("Done waiting for 100-continue")));
}

TEST_F(HttpClients, CurlUploadTooLargeGets413WithoutSendingIt) {
    echo_server es;
    const std::string curl = find_tool("curl", "curl");
    if (curl.empty()) return;
    char name[] = "/tmp/greenfiber-http-upload-XXXXXX";
    const int fd = ::mkstemp(name);
    ASSERT_GE(fd, 0);
    const std::string body(2 * 1024 * 1024, 'u');  // above the default body_limit (1 MiB)
    ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    ::close(fd);
    const child_result r =
        run_child({curl, "-sS", "-v", "--max-time", "20", "-H", "Expect: 100-continue",
                   "--data-binary", std::string("@") + name, es.srv.url("/big")});
    ::unlink(name);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("< HTTP/1.1 413 Payload Too Large"));
    EXPECT_THAT(r.err, Not(HasSubstr("< HTTP/1.1 100 Continue")));
    EXPECT_EQ(es.seen, std::vector<std::string>{});
}

// ---- Python

TEST_F(HttpClients, PythonHttpClientKeepsOneConnection) {
    echo_server es;
    const std::string py = python();
    if (py.empty()) return;
    const std::string script = R"(
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for method, path, body in [("GET", "/a", None), ("HEAD", "/b", None), ("GET", "/c", None),
                           ("POST", "/d", b"xyz"), ("PUT", "/e", b""), ("DELETE", "/f", None)]:
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    print(method, r.status, r.version, r.getheader("Content-Length"), repr(data))
print("socket reused:", c.sock is not None)
)";
    const child_result r = run_child({py, "-c", script, std::to_string(es.srv.port)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out,
              "GET 200 11 9 b'GET /a 0\\n'\n"
              "HEAD 200 11 10 b''\n"
              "GET 200 11 9 b'GET /c 0\\n'\n"
              "POST 200 11 10 b'POST /d 3\\n'\n"
              "PUT 200 11 9 b'PUT /e 0\\n'\n"
              "DELETE 200 11 12 b'DELETE /f 0\\n'\n"
              "socket reused: True\n")
        << r.err;
    EXPECT_EQ(es.srv.srv.served(), 1u);
}

TEST_F(HttpClients, PipelinedRequestsAreAnsweredInOrder) {
    // Six requests in one write, HEAD among them; Python's own response parser reads the
    // answers off one buffered stream, so a stray body would derail it.
    echo_server es;
    const std::string py = python();
    if (py.empty()) return;
    const std::string script = R"(
import http.client, io, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
reqs = [("GET", "/1", b""), ("HEAD", "/2", b""), ("POST", "/3", b"hello"),
        ("GET", "/4", b""), ("HEAD", "/5", b""), ("GET", "/6", b"")]
out = b""
for i, (m, p, b) in enumerate(reqs):
    out += f"{m} {p} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(b)}\r\n".encode()
    if i == len(reqs) - 1:
        out += b"Connection: close\r\n"
    out += b"\r\n" + b
s.sendall(out)
class KeepOpen(io.BufferedReader):
    def close(self):  # HTTPResponse closes its file after each body
        pass
f = KeepOpen(socket.SocketIO(s, "rb"))
class Sock:
    def makefile(self, *a, **k):
        return f
for m, p, b in reqs:
    r = http.client.HTTPResponse(Sock(), method=m)
    r.begin()
    print(m, p, r.status, repr(r.read()))
print("rest:", repr(f.read()))
)";
    const child_result r = run_child({py, "-c", script, std::to_string(es.srv.port)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out,
              "GET /1 200 b'GET /1 0\\n'\n"
              "HEAD /2 200 b''\n"
              "POST /3 200 b'POST /3 5\\n'\n"
              "GET /4 200 b'GET /4 0\\n'\n"
              "HEAD /5 200 b''\n"
              "GET /6 200 b'GET /6 0\\n'\n"
              "rest: b''\n")
        << r.err;
}

// ---- ApacheBench

int ab_figure(const std::string& out, const std::string& label) {
    std::smatch m;
    if (!std::regex_search(out, m, std::regex(label + R"(:\s+(\d+))"))) return -1;
    return std::stoi(m[1]);
}

TEST_F(HttpClients, ApacheBenchWithAndWithoutKeepAlive) {
    echo_server es;
    const std::string ab = find_tool("ab", "apache2-utils");
    if (ab.empty()) return;
    // -k: HTTP/1.0 with Connection: keep-alive, which the server honours.
    child_result r =
        run_child({ab, "-q", "-k", "-n", "400", "-c", "8", "-s", "10", es.srv.url("/k")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ab_figure(r.out, "Complete requests"), 400) << r.out;
    EXPECT_EQ(ab_figure(r.out, "Failed requests"), 0) << r.out;
    EXPECT_EQ(ab_figure(r.out, "Keep-Alive requests"), 400) << r.out;
    EXPECT_EQ(ab_figure(r.out, "Non-2xx responses"), -1) << r.out;  // printed only if any
    EXPECT_LE(es.srv.srv.served(), 8u);
    // Without -k: one connection per request, closed by the server.
    r = run_child({ab, "-q", "-n", "200", "-c", "4", "-s", "10", es.srv.url("/c")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ab_figure(r.out, "Complete requests"), 200) << r.out;
    EXPECT_EQ(ab_figure(r.out, "Failed requests"), 0) << r.out;
    EXPECT_EQ(es.seen.size(), 600u);
}

// ---- greenfiber's client against servers that misbehave

// A loopback server whose every connection runs `script` after reading one request's head.
struct head_then_script : greenfiber::testing::scripted_server {
    explicit head_then_script(std::function<void(tcp::socket&)> script)
        : scripted_server([script = std::move(script)](tcp::socket& s, int) {
              boost::beast::flat_buffer buf;
              http::request req;
              error_code ec;
              auto in = with_deadline(s, deadline(5s));
              boost::beast::http::read(in, buf, req, ec);
              if (!ec) script(s);
          }) {}
};

// Sends `bytes`; then closes, or stays silent until the client goes.
std::function<void(tcp::socket&)> says(std::string bytes, bool then_close) {
    return [bytes = std::move(bytes), then_close](tcp::socket& s) {
        error_code ec;
        s.write(asio::buffer(bytes), 5s, ec);
        if (then_close) return;
        std::array<char, 256> buf{};
        while (!ec) (void)s.read_some(asio::buffer(buf), 10s, ec);
    };
}

// What a GET got: "status body" or "error: <message>".
std::string outcome(http::client& session, const std::string& url) {
    try {
        const http::response res = session.get(url, 300ms);
        return std::to_string(res.result_int()) + " " + res.body();
    } catch (const boost::system::system_error& e) {
        return std::string("error: ") + e.code().message();
    }
}

TEST_F(HttpClients, GreenfiberClientAgainstMisbehavingServers) {
    struct misbehaviour {
        const char* what;
        std::function<void(tcp::socket&)> script;
        std::string expected;
        std::size_t idle_after;
    };
    const std::vector<misbehaviour> cases = {
        {"Content-Length above the body, then close",
         says("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true), "error: partial message",
         0},
        {"Content-Length above the body, then silence",
         says("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false),
         "error: Connection timed out", 0},
        {"Content-Length below the body: the excess is not kept for the next response",
         says("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", false), "200 ok",
         0},
        {"close in the middle of a chunk",
         says("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhal", true),
         "error: partial message", 0},
        {"100 then the final answer",
         says("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
              false),
         "200 real", 1},
        {"headers that never end",
         [](tcp::socket& s) {
             error_code ec;
             s.write(asio::buffer(std::string("HTTP/1.1 200 OK\r\n")), 5s, ec);
             const std::string field = "X-More: " + std::string(100, 'm') + "\r\n";
             while (!ec) s.write(asio::buffer(field), 5s, ec);
         },
         "error: header limit exceeded", 0},
        {"never an answer", says("", false), "error: Connection timed out", 0},
        {"not HTTP", says("SSH-2.0-OpenSSH_9.2\r\n", true), "error: bad version", 0},
    };
    for (const auto& c : cases) {
        head_then_script srv(c.script);
        http::client session;
        EXPECT_EQ(outcome(session, srv.url()), c.expected) << c.what;
        EXPECT_EQ(session.idle_connections(), c.idle_after) << c.what;
    }
}

}  // namespace

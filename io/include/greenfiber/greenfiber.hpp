#pragma once
/// \file
/// Everything greenfiber offers, in one include (the `greenfiber` dependency), except
/// greenfiber/http.hpp, which pulls in Beast's HTTP headers: include it where it is used.
/// Code that links only `greenfiber-fibers` includes the fibers headers one by one instead.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include "greenfiber/combinators.hpp"
#include "greenfiber/deadline.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/executor.hpp"
#include "greenfiber/future.hpp"
#include "greenfiber/generator.hpp"
#include "greenfiber/greenlet.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/hub_group.hpp"
#include "greenfiber/introspect.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/net.hpp"
#include "greenfiber/queue.hpp"
#include "greenfiber/server.hpp"
#include "greenfiber/signal.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/stack.hpp"
#include "greenfiber/stacktrace.hpp"
#include "greenfiber/stream.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "greenfiber/trace.hpp"
#include "greenfiber/use_fiber.hpp"
#include "greenfiber/value.hpp"

#pragma once
// Everything greenfiber offers, in one include.

#include "greenfiber/error.hpp"
#include "greenfiber/generator.hpp"
#include "greenfiber/greenlet.hpp"
#include "greenfiber/stack.hpp"
#include "greenfiber/value.hpp"

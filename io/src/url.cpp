// Boost.URL has no compiled library in Boost 1.81 packages: its sources are built here,
// in this one translation unit (the documented header-only mode).

#include <boost/url/src.hpp>

#pragma once
// MetricsHttp: runnerd's plain-HTTP endpoint for monitoring (`runnerd --metrics-listen`), served
// by kj-http on runnerd's event loop: `GET /metrics` (the Prometheus text format, see
// runner/metrics.h) and `GET /healthz` (200 "ok", or 503 with one line saying what is wrong).
// Any other path is 404, any other method 405.
//
// It has no authentication and serves nothing a client sent: bind it to an address only the
// monitoring can reach. Whoever connects is bounded (MetricsHttpLimits): a few connections at
// once, a small request, a deadline to send it and one to take the answer.

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/function.h>
#include <kj/timer.h>

namespace runner {

struct MetricsHttpLimits {
  // Connections open at once; past it, a new one is closed at once (and counted).
  size_t connections = 16;
  // Bytes a connection may send per request (its request line and headers; a request has no
  // body): past it, the connection is closed.
  size_t requestBytes = 8 * 1024;
  // A connection must send a whole request within this long of opening, or of its previous
  // answer; else it is closed (a slow or silent client holds a slot no longer).
  kj::Duration requestTimeout = 5 * kj::SECONDS;
  // Each write of an answer must be taken within this long, else the connection is closed.
  kj::Duration writeTimeout = 10 * kj::SECONDS;
};

class MetricsHttp final : private kj::HttpService {
 public:
  // `render` makes a scrape's text. `unhealthy` says in one line why runnerd is unhealthy, or
  // returns nullptr when it is healthy. Both run on the event loop, so must not block.
  MetricsHttp(kj::Timer& timer, kj::Function<kj::String()> render,
              kj::Function<kj::Maybe<kj::String>()> unhealthy,
              MetricsHttpLimits limits = MetricsHttpLimits());
  ~MetricsHttp() noexcept(false);
  KJ_DISALLOW_COPY(MetricsHttp);

  // Accepts connections until the promise is dropped.
  kj::Promise<void> listen(kj::ConnectionReceiver& receiver);

  // Connections open now, and those closed at once because `connections` were open.
  size_t openConnections() const { return open; }
  uint64_t refusedConnections() const { return refused; }

  const MetricsHttpLimits& limits() const { return bounds; }

 private:
  class BoundedStream;

  kj::Timer& timer;
  kj::Function<kj::String()> render;
  kj::Function<kj::Maybe<kj::String>()> unhealthy;
  MetricsHttpLimits bounds;
  kj::HttpHeaderTable::Builder headerBuilder;
  kj::HttpHeaderId allow;
  kj::Own<kj::HttpHeaderTable> headerTable;
  kj::HttpServer server;
  size_t open = 0;
  uint64_t refused = 0;

  class Errors final : public kj::TaskSet::ErrorHandler {
   public:
    // A connection that fails (its client went away, sent too much, too slowly) is only closed.
    void taskFailed(kj::Exception&&) override {}
  };
  Errors errors;
  kj::TaskSet connections;

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& requestBody,
                            Response& response) override;
  kj::Promise<void> reply(Response& response, unsigned status, kj::StringPtr statusText,
                          kj::StringPtr contentType, kj::String body,
                          kj::Maybe<kj::StringPtr> allowed = nullptr);
  static kj::HttpServerSettings settings(const MetricsHttpLimits& limits);
};

}  // namespace runner

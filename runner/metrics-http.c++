#include "runner/metrics-http.h"

#include <kj/debug.h>

#include "runner/metrics.h"

namespace runner {

// A connection's stream, bounded: reads stop at limits.requestBytes since the last answer (the
// connection then reads as closed), and a write not taken within limits.writeTimeout fails.
class MetricsHttp::BoundedStream final : public kj::AsyncIoStream {
 public:
  BoundedStream(kj::Own<kj::AsyncIoStream> inner, kj::Timer& timer, const MetricsHttpLimits& limits)
      : inner(kj::mv(inner)), timer(timer), limits(limits) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    size_t room = limits.requestBytes - kj::min(readSinceAnswer, limits.requestBytes);
    if (room == 0) return KJ_EXCEPTION(DISCONNECTED, "the request is too large");
    maxBytes = kj::min(maxBytes, room);
    minBytes = kj::min(minBytes, maxBytes);
    return inner->tryRead(buffer, minBytes, maxBytes).then([this](size_t n) {
      readSinceAnswer += n;
      return n;
    });
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    // A client only reads an answer once its request is whole: the next request starts afresh.
    readSinceAnswer = 0;
    return deadline(inner->write(buffer, size));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    readSinceAnswer = 0;
    return deadline(inner->write(pieces));
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override { inner->shutdownWrite(); }
  void abortRead() override { inner->abortRead(); }
  kj::Maybe<int> getFd() const override { return inner->getFd(); }

 private:
  kj::Own<kj::AsyncIoStream> inner;
  kj::Timer& timer;
  const MetricsHttpLimits& limits;
  size_t readSinceAnswer = 0;

  kj::Promise<void> deadline(kj::Promise<void> writing) {
    return writing.exclusiveJoin(timer.afterDelay(limits.writeTimeout).then([]() {
      return kj::Promise<void>(KJ_EXCEPTION(DISCONNECTED, "the client does not read its answer"));
    }));
  }
};

kj::HttpServerSettings MetricsHttp::settings(const MetricsHttpLimits& limits) {
  kj::HttpServerSettings settings;
  settings.headerTimeout = limits.requestTimeout;
  settings.pipelineTimeout = limits.requestTimeout;
  settings.canceledUploadGracePeriod = 0 * kj::SECONDS;
  settings.canceledUploadGraceBytes = 0;
  return settings;
}

MetricsHttp::MetricsHttp(kj::Timer& timer, kj::Function<kj::String()> render,
                         kj::Function<kj::Maybe<kj::String>()> unhealthy, MetricsHttpLimits limits)
    : timer(timer),
      render(kj::mv(render)),
      unhealthy(kj::mv(unhealthy)),
      bounds(limits),
      allow(headerBuilder.add("Allow")),
      headerTable(headerBuilder.build()),
      server(timer, *headerTable, *this, settings(bounds)),
      connections(errors) {}

MetricsHttp::~MetricsHttp() noexcept(false) {}

kj::Promise<void> MetricsHttp::listen(kj::ConnectionReceiver& receiver) {
  return receiver.accept().then(
      [this, &receiver](kj::Own<kj::AsyncIoStream> stream) {
        if (open >= bounds.connections) {
          // Closed unread: the monitoring retries at its next scrape.
          ++refused;
        } else {
          ++open;
          auto bounded = kj::heap<BoundedStream>(kj::mv(stream), timer, bounds);
          connections.add(
              server.listenHttp(kj::mv(bounded)).attach(kj::defer([this]() { --open; })));
        }
        return listen(receiver);
      },
      [this, &receiver](kj::Exception&&) {
        // Out of descriptors, say: the TLS listener logs that; try again shortly.
        return timer.afterDelay(100 * kj::MILLISECONDS).then([this, &receiver]() {
          return listen(receiver);
        });
      });
}

kj::Promise<void> MetricsHttp::request(kj::HttpMethod method, kj::StringPtr url,
                                       const kj::HttpHeaders& headers,
                                       kj::AsyncInputStream& requestBody, Response& response) {
  // The path alone: a query string changes nothing.
  kj::StringPtr path = url;
  kj::String pathOnly;
  KJ_IF_MAYBE (q, url.findFirst('?')) {
    pathOnly = kj::str(url.slice(0, *q));
    path = pathOnly;
  }
  constexpr kj::StringPtr TEXT = "text/plain; charset=utf-8"_kj;
  if (path != "/metrics" && path != "/healthz") {
    return reply(response, 404, "Not Found", TEXT,
                 kj::str("not found: try /metrics or /healthz\n"));
  }
  if (method != kj::HttpMethod::GET) {
    return reply(response, 405, "Method Not Allowed", TEXT, kj::str("only GET is allowed\n"),
                 "GET"_kj);
  }
  if (path == "/metrics") {
    return reply(response, 200, "OK", EXPOSITION_CONTENT_TYPE, render());
  }
  KJ_IF_MAYBE (reason, unhealthy()) {
    return reply(response, 503, "Service Unavailable", TEXT, kj::str(*reason, '\n'));
  }
  return reply(response, 200, "OK", TEXT, kj::str("ok\n"));
}

kj::Promise<void> MetricsHttp::reply(Response& response, unsigned status, kj::StringPtr statusText,
                                     kj::StringPtr contentType, kj::String body,
                                     kj::Maybe<kj::StringPtr> allowed) {
  kj::HttpHeaders headers(*headerTable);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, contentType);
  KJ_IF_MAYBE (a, allowed) {
    headers.set(allow, *a);
  }
  auto stream = response.send(status, statusText, headers, body.size());
  auto promise = stream->write(body.begin(), body.size());
  return promise.attach(kj::mv(stream), kj::mv(body));
}

}  // namespace runner

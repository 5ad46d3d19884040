#include "runner/backpressure-stream.h"

namespace runner {

kj::Promise<size_t> BackpressureStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  if (writesInProgress == 0) return inner->tryRead(buffer, minBytes, maxBytes);
  return writesDone.next().then(
      [this, buffer, minBytes, maxBytes]() { return tryRead(buffer, minBytes, maxBytes); });
}

kj::Promise<void> BackpressureStream::write(const void* buffer, size_t size) {
  return counted(kj::evalNow([&]() { return inner->write(buffer, size); }));
}

kj::Promise<void> BackpressureStream::write(
    kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return counted(kj::evalNow([&]() { return inner->write(pieces); }));
}

kj::Promise<void> BackpressureStream::counted(kj::Promise<void> writing) {
  ++writesInProgress;
  return writing.attach(kj::defer([this]() {
    if (--writesInProgress == 0) writesDone.fire();
    written();
  }));
}

}  // namespace runner

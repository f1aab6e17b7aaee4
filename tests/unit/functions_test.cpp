// functions.hpp: reference-counted bundles on the master, known keys per worker.
#include <catch2/catch.hpp>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/functions.hpp"

using namespace ppmpi;

TEST_CASE("function store: the bundle lives while a job needs it", "[functions]") {
    FunctionStore store;
    CHECK(store.size() == 0);
    store.acquire("k", Bytes("bun\0dle", 7));
    store.acquire("k", {});             // later users may omit the bundle
    store.acquire("k", "other bytes");  // ... or send it again: the first one is kept
    CHECK(store.contains("k"));
    CHECK(store.size() == 1);
    CHECK(store.bundle("k") == Bytes("bun\0dle", 7));

    store.release("k");
    store.release("k");
    CHECK(store.contains("k"));  // one user left
    CHECK(store.bundle("k") == Bytes("bun\0dle", 7));
    store.release("k");
    CHECK_FALSE(store.contains("k"));
    CHECK(store.size() == 0);

    // After the last user the key is unknown again: it needs its bundle once more.
    CHECK_THROWS_AS(store.acquire("k", {}), ProtocolError);
    store.acquire("k", "new");
    CHECK(store.bundle("k") == "new");
}

TEST_CASE("function store: unknown keys", "[functions]") {
    FunctionStore store;
    CHECK_THROWS_AS(store.acquire("missing", {}), ProtocolError);
    CHECK_FALSE(store.contains("missing"));  // a failed acquire stores nothing
    CHECK(store.size() == 0);
    CHECK_THROWS_AS(store.release("missing"), InternalError);
    CHECK_THROWS_AS(store.bundle("missing"), InternalError);
}

TEST_CASE("function store: keys are counted independently", "[functions]") {
    FunctionStore store;
    store.acquire("a", "A");
    store.acquire("b", "B");
    store.acquire("b", {});
    CHECK(store.size() == 2);
    store.release("b");
    store.release("a");
    CHECK_FALSE(store.contains("a"));
    CHECK(store.contains("b"));
    CHECK(store.bundle("b") == "B");
}

TEST_CASE("known functions: per worker, forgotten with the worker", "[functions]") {
    KnownFunctions known;
    CHECK_FALSE(known.knows(1, "f"));
    known.learn(1, "f");
    known.learn(1, "f");
    known.learn(1, "g");
    known.learn(2, "g");
    CHECK(known.knows(1, "f"));
    CHECK(known.knows(1, "g"));
    CHECK(known.knows(2, "g"));
    CHECK_FALSE(known.knows(2, "f"));
    CHECK_FALSE(known.knows(3, "g"));

    known.forget_worker(1);
    CHECK_FALSE(known.knows(1, "f"));
    CHECK_FALSE(known.knows(1, "g"));
    CHECK(known.knows(2, "g"));
    known.forget_worker(42);  // unknown worker: harmless
    CHECK(known.knows(2, "g"));
}

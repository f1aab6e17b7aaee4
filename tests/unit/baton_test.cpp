// Baton (baton.hpp): who runs a comm-loop turn, and when the owner is told to take over.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "ppmpi/core/baton.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

TEST_CASE("baton: the owner runs turns unless a borrower drives", "[baton]") {
    Wakeup owner_wakeup;
    Baton baton(owner_wakeup);
    CHECK(baton.owner_turn([] { return 7; }) == std::optional<int>(7));
    {
        Baton::Borrow borrow(baton);
        CHECK(baton.borrowed());
        CHECK_FALSE(baton.owner_turn([] { return true; }).has_value());
        CHECK(borrow.try_turn([] { return 3; }, 1ms) == std::optional<int>(3));
    }
    CHECK_FALSE(baton.borrowed());
    CHECK(owner_wakeup.wait_for(0us));  // the last borrower to leave woke the owner
    CHECK(baton.owner_turn([] { return 1; }).has_value());
}

TEST_CASE("baton: a borrower leaving for its own work lets the owner sleep", "[baton]") {
    Wakeup owner_wakeup;
    Baton baton(owner_wakeup);
    {
        Baton::Borrow borrow(baton);
        borrow.leave_owner_asleep();
    }
    CHECK_FALSE(owner_wakeup.wait_for(0us));
}

TEST_CASE("baton: a turn in progress is never shared, a closed baton runs none", "[baton]") {
    Wakeup owner_wakeup;
    Baton baton(owner_wakeup);
    std::atomic<bool> in_turn{false}, release{false};
    std::thread owner([&] {
        baton.owner_turn([&] {
            in_turn = true;
            while (!release) std::this_thread::sleep_for(100us);
            return true;
        });
    });
    while (!in_turn) std::this_thread::sleep_for(100us);
    Baton::Borrow borrow(baton);
    CHECK_FALSE(borrow.try_turn([] { return true; }, 2ms).has_value());  // gave up waiting
    release = true;
    owner.join();
    CHECK(borrow.try_turn([] { return true; }, 2ms).has_value());
    auto alone = baton.close();
    std::thread other([&] {
        Baton::Borrow late(baton);
        CHECK_FALSE(late.try_turn([] { return true; }, 2ms).has_value());
    });
    other.join();
    alone.unlock();
    CHECK_FALSE(borrow.try_turn([] { return true; }, 2ms).has_value());  // closed for good
    CHECK_FALSE(baton.owner_turn([] { return true; }).has_value());
}

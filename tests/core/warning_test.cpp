// The process-wide warning handler (include/kq/warning.hpp).
#include "kq/warning.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

TEST(Warning, HandlerReceivesMessagesAndIsRestored) {
  std::vector<std::string> got;
  const kq::WarningHandler previous =
      kq::set_warning_handler([&](const std::string& m) { got.push_back(m); });
  kq::warn("first");
  kq::warn("second");
  const kq::WarningHandler mine = kq::set_warning_handler(previous);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "first");
  EXPECT_EQ(got[1], "second");
  EXPECT_TRUE(static_cast<bool>(mine));  // the handler we installed came back
  kq::warn("to the default handler");    // not captured any more
  EXPECT_EQ(got.size(), 2u);
}

TEST(Warning, DefaultHandlerWritesOneLineToStderr) {
  const kq::WarningHandler previous = kq::set_warning_handler({});
  ::testing::internal::CaptureStderr();
  kq::warn("tensor 'x' ignored");
  const std::string err = ::testing::internal::GetCapturedStderr();
  kq::set_warning_handler(previous);
  EXPECT_EQ(err, "kq: warning: tensor 'x' ignored\n");
}

TEST(Warning, AThrowingHandlerDoesNotTurnAWarningIntoAnError) {
  const kq::WarningHandler previous =
      kq::set_warning_handler([](const std::string&) { throw std::runtime_error("handler failed"); });
  EXPECT_NO_THROW(kq::warn("x"));
  kq::set_warning_handler(previous);
}

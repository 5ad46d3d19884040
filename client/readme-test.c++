// README's runctl section is runctl's manual: every command and every long option runctl accepts
// (client/command-names.c++, which command_names_test and runctl_usability_test hold to each
// command's --help) is named there.

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "client/command-names.h"

namespace runner {
namespace client {
namespace {

// README.md from "## runctl" to the next second-level heading.
std::string runctlSection() {
  std::ifstream file("README.md");
  std::stringstream text;
  text << file.rdbuf();
  auto all = text.str();
  auto begin = all.find("\n## runctl\n");
  if (begin == std::string::npos) return "";
  auto end = all.find("\n## ", begin + 1);
  return all.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// `name` appears in `text` as a whole word: not followed by another letter, digit or '-'.
bool namesWord(const std::string& text, const std::string& name) {
  for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + 1)) {
    size_t after = at + name.size();
    if (after == text.size()) return true;
    char c = text[after];
    bool continues = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_';
    if (!continues) return true;
  }
  return false;
}

TEST(Readme, TheRunctlTableNamesEveryCommandAndOption) {
  auto section = runctlSection();
  ASSERT_FALSE(section.empty()) << "README.md has no \"## runctl\" section";
  size_t checked = 0;
  for (auto& command : commandNames()) {
    if (command.name == "help") continue;
    EXPECT_NE(section.find("| `" + std::string(command.name.cStr())), std::string::npos)
        << "README's runctl table has no row for " << command.name.cStr();
    for (auto option : command.options) {
      std::string name(option.cStr());
      if (name.back() == '=') name.pop_back();
      if (name == "--help" || name.rfind("--", 0) != 0) continue;
      EXPECT_TRUE(namesWord(section, name))
          << "README's runctl section does not mention " << command.name.cStr() << " " << name;
      ++checked;
    }
  }
  for (auto option : globalOptionNames()) {
    std::string name(option.cStr());
    if (name.back() == '=') name.pop_back();
    if (name == "--help" || name == "--verbose" || name == "--version") continue;
    EXPECT_TRUE(namesWord(section, name)) << "README's runctl section does not mention " << name;
    ++checked;
  }
  EXPECT_GT(checked, 30u);
}

}  // namespace
}  // namespace client
}  // namespace runner

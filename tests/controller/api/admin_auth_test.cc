#include "controller/api/admin_auth.h"

#include <sys/stat.h>

#include <fstream>

#include "common/config/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace {

using ::testing::HasSubstr;

constexpr char kViewerToken[] = "viewer-token-0123456789";
constexpr char kOperatorToken[] = "operator-token-0123456789";

std::unique_ptr<AdminAuthorizer> MakeAuth() {
  std::string token_file = testing::TempDir() + "/operator.token";
  std::ofstream(token_file) << kOperatorToken << "\n";
  chmod(token_file.c_str(), 0600);
  v1::AdminTokens tokens;
  EXPECT_TRUE(
      ParseYamlToMessage(
          absl::StrCat("tokens:\n"
                       "  - {name: grafana, role: viewer, token: ",
                       kViewerToken,
                       "}\n"
                       "  - {name: oncall, role: operator, token_file: ",
                       token_file, "}\n"),
          "tokens.yaml", &tokens)
          .ok());
  absl::StatusOr<std::unique_ptr<AdminAuthorizer>> auth =
      AdminAuthorizer::Create(tokens);
  EXPECT_TRUE(auth.ok()) << auth.status();
  return std::move(*auth);
}

TEST(AdminAuthTest, ViewerCanReadButNotRunProbes) {
  auto auth = MakeAuth();
  std::string bearer = absl::StrCat("Bearer ", kViewerToken);
  for (const char* method : {"ListAgents", "ListSchedules", "GetVerdicts",
                             "WatchVerdicts", "Analyze", "Report"}) {
    absl::StatusOr<AdminPrincipal> p = auth->Authorize(bearer, method);
    ASSERT_TRUE(p.ok()) << method;
    EXPECT_EQ(p->name, "grafana");
  }
  for (const char* method : {"RunProbe", "ApplySchedules", "DeleteSchedule"}) {
    absl::StatusOr<AdminPrincipal> p = auth->Authorize(bearer, method);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kPermissionDenied) << method;
    EXPECT_THAT(p.status().message(), HasSubstr("needs operator"));
    EXPECT_THAT(p.status().message(), ::testing::Not(HasSubstr(kViewerToken)));
  }
  EXPECT_EQ(auth->permission_denied_total(), 3u);
}

TEST(AdminAuthTest, OperatorCanRunProbes) {
  auto auth = MakeAuth();
  absl::StatusOr<AdminPrincipal> p =
      auth->Authorize(absl::StrCat("bearer ", kOperatorToken), "RunProbe");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "oncall");
  EXPECT_EQ(p->role, v1::OPERATOR);
  EXPECT_TRUE(
      auth->Authorize(absl::StrCat("Bearer ", kOperatorToken), "ListAgents")
          .ok());
}

TEST(AdminAuthTest, MissingOrWrongTokensAreUnauthenticated) {
  auto auth = MakeAuth();
  for (const char* value :
       {"", "Basic abc", "Bearer", "Bearer nope-nope-nope-nope",
        "Bearer viewer-token-012345678"}) {
    EXPECT_EQ(auth->Authorize(value, "ListAgents").status().code(),
              absl::StatusCode::kUnauthenticated)
        << value;
  }
  EXPECT_EQ(auth->unauthenticated_total(), 5u);
}

TEST(AdminAuthTest, BadTokenFilesAreRefusedWithTheEntryNamed) {
  v1::AdminTokens tokens;
  auto* t = tokens.add_tokens();
  t->set_name("x");
  t->set_role(v1::VIEWER);
  t->set_token_file("/nonexistent/token");
  EXPECT_THAT(AdminAuthorizer::Create(tokens).status().message(),
              HasSubstr("tokens[0].token_file: cannot read"));
  t->clear_token_file();
  t->set_token("short");
  EXPECT_THAT(AdminAuthorizer::Create(tokens).status().message(),
              HasSubstr("tokens[0]: token missing or shorter than 16"));
  t->set_token("long-enough-token-123");
  t->set_role(v1::ADMIN_ROLE_UNSPECIFIED);
  EXPECT_THAT(AdminAuthorizer::Create(tokens).status().message(),
              HasSubstr("tokens[0].role: required"));
  t->set_role(v1::OPERATOR);
  *tokens.add_tokens() = *t;
  EXPECT_THAT(AdminAuthorizer::Create(tokens).status().message(),
              HasSubstr("tokens[1]: the same token is listed twice"));
}

TEST(AdminAuthTest, UnknownMethodsNeedOperator) {
  EXPECT_EQ(AdminAuthorizer::RequiredRole("SomethingNew"), v1::OPERATOR);
  EXPECT_EQ(AdminAuthorizer::RequiredRole("Analyze"), v1::VIEWER);
}

TEST(AdminAuthTest, TokenFilesOthersCanReadAreRefused) {
  const std::string token_file = testing::TempDir() + "/open.token";
  std::ofstream(token_file) << kOperatorToken << "\n";
  chmod(token_file.c_str(), 0666);
  v1::AdminTokens tokens;
  v1::AdminToken* t = tokens.add_tokens();
  t->set_name("oncall");
  t->set_role(v1::OPERATOR);
  t->set_token_file(token_file);
  absl::StatusOr<std::unique_ptr<AdminAuthorizer>> auth =
      AdminAuthorizer::Create(tokens);
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(auth.status().message(), HasSubstr("tokens[0].token_file"));
  EXPECT_THAT(auth.status().message(), HasSubstr("mode 0666"));
  chmod(token_file.c_str(), 0600);
  EXPECT_TRUE(AdminAuthorizer::Create(tokens).ok());
}

}  // namespace
}  // namespace fleetcanary

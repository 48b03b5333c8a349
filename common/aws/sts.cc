#include "common/aws/sts.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/aws/http.h"
#include "common/status/status_util.h"

namespace fleetcanary {
namespace aws {
namespace {

constexpr char kVersion[] = "2011-06-15";
constexpr size_t kMaxResponseBytes = 256 * 1024;

using XmlDoc = std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)>;

// The first element child of `node` with local name `name`, or null.
xmlNode* Child(xmlNode* node, const char* name) {
  if (node == nullptr) return nullptr;
  for (xmlNode* c = node->children; c != nullptr; c = c->next) {
    if (c->type == XML_ELEMENT_NODE &&
        xmlStrcmp(c->name, reinterpret_cast<const xmlChar*>(name)) == 0) {
      return c;
    }
  }
  return nullptr;
}

std::string Text(xmlNode* node) {
  if (node == nullptr) return "";
  xmlChar* content = xmlNodeGetContent(node);
  if (content == nullptr) return "";
  std::string out(reinterpret_cast<const char*>(content));
  xmlFree(content);
  return out;
}

absl::StatusOr<XmlDoc> ParseXml(absl::string_view xml, absl::string_view what) {
  if (xml.size() > kMaxResponseBytes) {
    return absl::DataLossError(absl::StrCat(what, ": response too large"));
  }
  XmlDoc doc(xmlReadMemory(
                 xml.data(), static_cast<int>(xml.size()), "sts.xml", nullptr,
                 XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
             xmlFreeDoc);
  if (!doc || xmlDocGetRootElement(doc.get()) == nullptr) {
    return absl::DataLossError(
        absl::StrCat(what, ": response is not well-formed XML"));
  }
  return doc;
}

absl::Status ErrorStatus(absl::string_view action, long http_status,
                         absl::string_view code, absl::string_view message) {
  const std::string text = absl::StrCat(
      "STS ", action, ": HTTP ", http_status, code.empty() ? "" : " ", code,
      message.empty() ? "" : ": ", message.substr(0, 512));
  if (code == "Throttling" || code == "ThrottlingException" ||
      code == "IDPCommunicationError" || code == "ServiceUnavailable" ||
      http_status == 429 || http_status >= 500) {
    return absl::UnavailableError(text);
  }
  if (code == "AccessDenied" || code == "InvalidIdentityToken" ||
      code == "ExpiredTokenException" || code == "ExpiredToken" ||
      code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" ||
      http_status == 403) {
    return absl::PermissionDeniedError(text);
  }
  return absl::InvalidArgumentError(text);
}

absl::StatusOr<AwsCredentials> Call(const StsOptions& options,
                                    absl::string_view action,
                                    const std::string& body,
                                    const sigv4::Credentials* signer) {
  FC_ASSIGN_OR_RETURN(ParsedUrl url,
                      ParseHttpUrl(options.endpoint, "STS endpoint"));
  HttpExchange ex;
  ex.method = "POST";
  ex.url = url.url;
  ex.timeout = options.timeout;
  ex.max_response_bytes = kMaxResponseBytes;
  ex.body = body;
  ex.headers = {
      {"Host", url.host_header},
      {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  if (signer != nullptr) {
    if (options.clock == nullptr) {
      return absl::InvalidArgumentError("StsOptions.clock: required");
    }
    std::vector<sigv4::HeaderView> views;
    for (const auto& [n, v] : ex.headers) views.push_back({n, v});
    sigv4::HttpRequestView view{"POST", url.path, views, body, ""};
    sigv4::SigningParams params;
    params.service = "sts";
    params.region = options.region;
    params.time = options.clock->Now();
    FC_ASSIGN_OR_RETURN(sigv4::SigningResult signed_request,
                        sigv4::SignRequest(view, *signer, params));
    for (auto& h : signed_request.headers_to_add) ex.headers.push_back(h);
  }
  absl::StatusOr<HttpReply> reply = HttpCall(ex);
  if (!reply.ok()) {
    return absl::Status(
        reply.status().code(),
        absl::StrCat("STS ", action, ": ", reply.status().message()));
  }
  return ParseStsResponse(action, reply->status, reply->body);
}

}  // namespace

absl::StatusOr<absl::Time> ParseIso8601(absl::string_view text) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, std::string(text), &t, &err)) {
    return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", text.substr(0, 64), "\" is not an ISO 8601 time: ", err));
}

absl::StatusOr<AwsCredentials> ParseStsResponse(absl::string_view action,
                                                long http_status,
                                                absl::string_view xml) {
  absl::StatusOr<XmlDoc> doc = ParseXml(xml, absl::StrCat("STS ", action));
  if (!doc.ok()) {
    if (http_status != 200) return ErrorStatus(action, http_status, "", "");
    return doc.status();
  }
  xmlNode* root = xmlDocGetRootElement(doc->get());
  if (http_status != 200 ||
      xmlStrcmp(root->name, BAD_CAST "ErrorResponse") == 0) {
    xmlNode* error = Child(root, "Error");
    return ErrorStatus(action, http_status, Text(Child(error, "Code")),
                       Text(Child(error, "Message")));
  }
  const std::string response = absl::StrCat(action, "Response");
  if (xmlStrcmp(root->name, BAD_CAST response.c_str()) != 0) {
    return absl::DataLossError(
        absl::StrCat("STS ", action, ": unexpected XML root <",
                     reinterpret_cast<const char*>(root->name), ">"));
  }
  xmlNode* creds =
      Child(Child(root, absl::StrCat(action, "Result").c_str()), "Credentials");
  if (creds == nullptr) {
    return absl::DataLossError(
        absl::StrCat("STS ", action, ": response has no Credentials"));
  }
  AwsCredentials out;
  out.keys.access_key_id = Text(Child(creds, "AccessKeyId"));
  out.keys.secret_access_key = Text(Child(creds, "SecretAccessKey"));
  out.keys.session_token = Text(Child(creds, "SessionToken"));
  if (out.keys.access_key_id.empty() || out.keys.secret_access_key.empty() ||
      out.keys.session_token.empty()) {
    return absl::DataLossError(absl::StrCat(
        "STS ", action,
        ": Credentials lack AccessKeyId, SecretAccessKey or SessionToken"));
  }
  absl::StatusOr<absl::Time> expiration =
      ParseIso8601(Text(Child(creds, "Expiration")));
  if (!expiration.ok()) {
    return absl::DataLossError(absl::StrCat(
        "STS ", action, ": Expiration: ", expiration.status().message()));
  }
  out.expiration = *expiration;
  return out;
}

absl::StatusOr<AwsCredentials> AssumeRoleWithWebIdentity(
    const StsOptions& options, absl::string_view role_arn,
    absl::string_view session_name, absl::string_view web_identity_token) {
  std::string body =
      absl::StrCat("Action=AssumeRoleWithWebIdentity&Version=", kVersion,
                   "&RoleArn=", FormEncode(role_arn),
                   "&RoleSessionName=", FormEncode(session_name),
                   "&WebIdentityToken=", FormEncode(web_identity_token));
  if (options.duration > absl::ZeroDuration()) {
    absl::StrAppend(
        &body, "&DurationSeconds=", absl::ToInt64Seconds(options.duration));
  }
  return Call(options, "AssumeRoleWithWebIdentity", body, nullptr);
}

absl::StatusOr<AwsCredentials> AssumeRole(const StsOptions& options,
                                          const sigv4::Credentials& source,
                                          absl::string_view role_arn,
                                          absl::string_view session_name) {
  std::string body = absl::StrCat(
      "Action=AssumeRole&Version=", kVersion, "&RoleArn=", FormEncode(role_arn),
      "&RoleSessionName=", FormEncode(session_name));
  if (options.duration > absl::ZeroDuration()) {
    absl::StrAppend(
        &body, "&DurationSeconds=", absl::ToInt64Seconds(options.duration));
  }
  return Call(options, "AssumeRole", body, &source);
}

}  // namespace aws
}  // namespace fleetcanary

// RenderReportHtml: the sections and their elements (one heat-map row and one block per edge),
// the Pareto view, escaping, bounds and errors naming the document and line.
#include "core/report_html.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/architecture.h"
#include "core/json_fields.h"
#include "core/search_space.h"

namespace nas {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

class ReportHtmlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SearchSpace::Preset("fashion-mnist");
    ASSERT_TRUE(s.ok()) << s.status();
    space_ = *s;
    in_.title = "job j-1";
    in_.space_json = space_.ToJson();
    std::vector<int> choices(space_.num_edges(), 0);
    choices[1] = space_.edges()[1].ZeroIndex() >= 0 ? space_.edges()[1].ZeroIndex() : 0;
    choices_ = choices;
    in_.architecture_json = Architecture{space_.name(), choices}.ToJson(space_);
    for (int step = 0; step < 30; ++step) in_.history.push_back(Line("search", step));
    Json report = {{"space", space_.name()},
                   {"dataset", "fashion-mnist"},
                   {"device", "cpu-test"},
                   {"runtime", "libtorch"},
                   {"loss", "mul#log"},
                   {"target_latency_ms", 1.5},
                   {"derived",
                    {{"test_accuracy", 0.91}, {"predicted_latency_ms", 1.2},
                     {"measured_latency_ms", 1.25}, {"measured_latency_std_ms", 0.02},
                     {"parameters", 12345}}},
                   {"baseline", {{"test_accuracy", 0.92}, {"predicted_latency_ms", 2.4}}}};
    report_ = report;
    in_.report_json = report.dump();
  }

  // A history line whose alpha moves toward candidate 0 on every edge.
  std::string Line(const std::string& phase, int step) const {
    Json alpha = Json::array();
    for (int k : space_.CandidatesPerEdge()) {
      Json row = Json::array();
      for (int i = 0; i < k; ++i) row.push_back(i == 0 ? 0.1 * step : 0.0);
      alpha.push_back(row);
    }
    return Json{{"phase", phase},   {"step", step},     {"loss", 1.0 / (1 + step)},
                {"accuracy", 0.5},  {"entropy", 1.0},   {"expected_latency_ms", 2.0 - 0.01 * step},
                {"alpha", alpha}}
        .dump();
  }

  SearchSpace space_;
  ReportInputs in_;
  Json report_;
  std::vector<int> choices_;
};

TEST_F(ReportHtmlTest, OneHeatMapRowAndOneBlockPerEdge) {
  auto html = RenderReportHtml(in_);
  ASSERT_TRUE(html.ok()) << html.status();
  const int edges = space_.num_edges();
  EXPECT_EQ(Count(*html, "class=\"heatmap-row\""), static_cast<size_t>(edges));
  EXPECT_EQ(Count(*html, "<g class=\"block"), static_cast<size_t>(edges));
  EXPECT_EQ(Count(*html, "class=\"cell\""), static_cast<size_t>(edges) * 30);
  for (const char* id : {"summary", "heatmap", "latency", "training", "network", "pareto"}) {
    EXPECT_THAT(*html, HasSubstr(std::string("<section id=\"") + id + "\""));
  }
  // The derived network's choices, the skipped block dashed.
  EXPECT_THAT(*html, HasSubstr("data-choice=\"" +
                               space_.edges()[0].candidates[choices_[0]].Name() + "\""));
  if (space_.edges()[1].ZeroIndex() >= 0) {
    EXPECT_THAT(*html, HasSubstr("class=\"block skipped\" data-edge=\"1\""));
  }
  // The target line on the latency chart; self-contained: no script, no external reference.
  EXPECT_THAT(*html, HasSubstr("class=\"reference\""));
  EXPECT_THAT(*html, HasSubstr("default-src 'none'"));
  EXPECT_THAT(*html, Not(HasSubstr("<script")));
  EXPECT_THAT(*html, Not(HasSubstr("http://")));
  EXPECT_THAT(*html, Not(HasSubstr("https://")));
}

TEST_F(ReportHtmlTest, ColumnsAreSampledPastTheLimit) {
  in_.history.clear();
  for (int step = 0; step < 1000; ++step) in_.history.push_back(Line("search", step));
  ReportHtmlOptions o;
  o.max_columns = 50;
  auto html = RenderReportHtml(in_, o);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_EQ(Count(*html, "class=\"cell\""), static_cast<size_t>(space_.num_edges()) * 50);
  // The last column is the last step.
  EXPECT_THAT(*html, HasSubstr("step 999:"));
}

TEST_F(ReportHtmlTest, ParetoViewShowsPathsAndTheirFront) {
  Json paths = Json::array();
  std::vector<std::pair<double, double>> pts = {{1.0, 0.80}, {1.5, 0.85}, {2.0, 0.84}, {2.5, 0.9}};
  for (size_t i = 0; i < pts.size(); ++i) {
    paths.push_back({{"source", i == 0 ? "derived" : "alpha"},
                     {"choices", choices_},
                     {"predicted_latency_ms", pts[i].first},
                     {"accuracy", pts[i].second}});
  }
  report_["sampled_paths"] = {{"evaluated_on", "200 validation images"}, {"paths", paths}};
  in_.report_json = report_.dump();
  auto html = RenderReportHtml(in_);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_EQ(Count(*html, "<circle class=\"path "), 4u);
  EXPECT_EQ(Count(*html, "<circle class=\"path derived\""), 1u);
  EXPECT_THAT(*html, HasSubstr("class=\"front\""));
  // The trained networks as squares: derived and baseline.
  EXPECT_EQ(Count(*html, "<g class=\"trained "), 2u);
  EXPECT_THAT(*html, HasSubstr("200 validation images"));
}

TEST_F(ReportHtmlTest, TextFromTheInputsIsEscaped) {
  in_.title = "<script>alert(1)</script>";
  report_["dataset"] = "\"><img src=x onerror=alert(1)>";
  in_.report_json = report_.dump();
  auto html = RenderReportHtml(in_);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, Not(HasSubstr("<script>")));
  EXPECT_THAT(*html, Not(HasSubstr("<img")));
  EXPECT_THAT(*html, HasSubstr("&lt;script&gt;"));
}

TEST_F(ReportHtmlTest, MalformedInputsAreErrorsNamingTheDocument) {
  {
    ReportInputs bad = in_;
    bad.history[7] = "{\"phase\": \"search\", \"alpha\": [[1, 2]]}";
    auto html = RenderReportHtml(bad);
    ASSERT_FALSE(html.ok());
    EXPECT_THAT(std::string(html.status().message()), HasSubstr("alpha_history.jsonl line 8"));
  }
  {
    ReportInputs bad = in_;
    bad.history[0] = "{not json";
    auto html = RenderReportHtml(bad);
    ASSERT_FALSE(html.ok());
    EXPECT_THAT(std::string(html.status().message()), HasSubstr("alpha_history.jsonl line 1"));
  }
  {
    ReportInputs bad = in_;
    Json r = report_;
    r["derived"]["test_accuracy"] = "high";
    bad.report_json = r.dump();
    auto html = RenderReportHtml(bad);
    ASSERT_FALSE(html.ok());
    EXPECT_THAT(std::string(html.status().message()), HasSubstr("report.json.derived"));
  }
  {
    ReportInputs bad = in_;
    Json r = report_;
    r["sampled_paths"] = {{"paths", {{{"source", "alpha"}, {"choices", {99}},
                                      {"predicted_latency_ms", 1}, {"accuracy", 0.5}}}}};
    bad.report_json = r.dump();
    auto html = RenderReportHtml(bad);
    ASSERT_FALSE(html.ok());
    EXPECT_THAT(std::string(html.status().message()), HasSubstr("sampled_paths.paths[0]"));
  }
  {
    ReportInputs bad = in_;
    Json r = report_;
    r["device"] = 42;
    bad.report_json = r.dump();
    auto html = RenderReportHtml(bad);
    ASSERT_FALSE(html.ok());
    EXPECT_THAT(std::string(html.status().message()), HasSubstr("device"));
  }
  {
    ReportInputs bad = in_;
    ReportHtmlOptions o;
    o.max_history_lines = 10;
    auto html = RenderReportHtml(bad, o);
    ASSERT_FALSE(html.ok());
    EXPECT_THAT(std::string(html.status().message()), HasSubstr("limit of 10"));
  }
  {
    ReportInputs bad = in_;
    bad.space_json = "[]";
    EXPECT_FALSE(RenderReportHtml(bad).ok());
  }
}

TEST_F(ReportHtmlTest, AnEmptyHistoryStillRenders) {
  in_.history.clear();
  auto html = RenderReportHtml(in_);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("No history."));
  EXPECT_EQ(Count(*html, "<g class=\"block"), static_cast<size_t>(space_.num_edges()));
}

}  // namespace
}  // namespace nas

#include "iommu/trace.h"

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/dma_space.h"

namespace ionest::trace {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Everything written to a tmpfile, one string per line.
std::vector<std::string> Lines(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string all;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), f)) all.append(buf, n);
  std::vector<std::string> lines = absl::StrSplit(all, '\n', absl::SkipEmpty());
  return lines;
}

TEST(TraceFormatTest, OneLineTimestampModelEventFields) {
  EXPECT_EQ(FormatEvent(1.5, "vtd", "fault",
                        {Rid("rid", 0x0310), OptDec("pasid", std::nullopt), Hex("addr", 0x1000),
                         Access("access", kDmaWrite | kDmaPriv), Dec("reason", 5), Str("name", "write denied"),
                         OptDec("ssid", 7), Str("empty", "")}),
            "1.500000 vtd fault rid=03:02.0 pasid=- addr=0x1000 access=wp reason=5 name=write_denied ssid=7 empty=-");
  EXPECT_EQ(FormatEvent(0, "smmuv3", "cmd", {}), "0.000000 smmuv3 cmd");
}

TEST(TraceSpecTest, ClassesAndPath) {
  auto s = ParseTraceSpec("faults,qi:/tmp/x.trace");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->mask, kFault | kCommand);
  EXPECT_EQ(s->path, "/tmp/x.trace");
  s = ParseTraceSpec("all");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->mask, kAllClasses);
  EXPECT_EQ(s->path, "");
  s = ParseTraceSpec("prq,ir,virtio:-");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->mask, kPageRequest | kInterrupt | kRequest);
  EXPECT_EQ(s->path, "");
  s = ParseTraceSpec("cmdq,stall,req,fault:stderr");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->mask, kCommand | kPageRequest | kRequest | kFault);
  EXPECT_EQ(ClassNames(kAllClasses), "faults,qi,prq,ir,virtio");
}

TEST(TraceSpecTest, ErrorsNameTheProblem) {
  EXPECT_THAT(std::string(ParseTraceSpec("faults,bogus:x").status().message()), HasSubstr("unknown event class 'bogus'"));
  EXPECT_THAT(std::string(ParseTraceSpec(":x").status().message()), HasSubstr("no event classes"));
  EXPECT_THAT(std::string(ParseTraceSpec("faults:").status().message()), HasSubstr("empty path"));
  EXPECT_THAT(std::string(ParseTraceSpec("faults,,qi").status().message()), HasSubstr("unknown event class ''"));
  auto open = Sink::Open({kFault, "/nonexistent-dir/x.trace"});
  EXPECT_THAT(std::string(open.status().message()), HasSubstr("cannot open '/nonexistent-dir/x.trace'"));
}

TEST(TraceSinkTest, OffMeansNoOutputAndOnIsFalse) {
  Uninstall();
  EXPECT_FALSE(On(kAllClasses));
  Emit(kFault, "vtd", "fault", {Dec("x", 1)});  // no sink: nothing happens
  FILE* f = std::tmpfile();
  {
    Sink sink(f, false, kFault);
    // Not installed: still nothing.
    Emit(kFault, "vtd", "fault", {Dec("x", 1)});
    sink.Flush();
  }
  EXPECT_TRUE(Lines(f).empty());
  std::fclose(f);
}

TEST(TraceSinkTest, FiltersByClass) {
  FILE* f = std::tmpfile();
  {
    Sink sink(f, false, kFault | kInterrupt);
    ScopedInstall install(&sink);
    EXPECT_TRUE(On(kFault));
    EXPECT_TRUE(On(kInterrupt));
    EXPECT_FALSE(On(kCommand));
    EXPECT_FALSE(On(kPageRequest | kRequest));
    Emit(kFault, "vtd", "fault", {Dec("n", 1)});
    Emit(kCommand, "vtd", "qi", {Dec("n", 2)});  // filtered out even without the On() check
    Emit(kInterrupt, "vtd", "ir", {Dec("n", 3)});
    sink.Flush();
    EXPECT_EQ(sink.written(), 2u);
    EXPECT_EQ(sink.dropped(), 0u);
    EXPECT_EQ(sink.Summary(), "trace (faults,ir): 2 events written");
  }
  EXPECT_FALSE(On(kAllClasses));  // uninstalled with the scope
  std::vector<std::string> lines = Lines(f);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], MatchesRegex(R"([0-9]+\.[0-9]{6} vtd fault n=1)"));
  EXPECT_THAT(lines[1], MatchesRegex(R"([0-9]+\.[0-9]{6} vtd ir n=3)"));
  std::fclose(f);
}

TEST(TraceSinkTest, FullBufferDropsAndCounts) {
  FILE* f = std::tmpfile();
  const std::string line = FormatEvent(0, "vtd", "fault", {Hex("addr", 0x1234)});  // 31 bytes + newline
  {
    Sink sink(f, false, kFault, /*buffer_bytes=*/10 * (line.size() + 1));
    sink.PauseWriterForTest(true);  // the writer is "behind"
    for (int i = 0; i < 25; ++i) sink.Write(line);
    EXPECT_EQ(sink.dropped(), 15u);
    sink.PauseWriterForTest(false);
    sink.Flush();
    EXPECT_EQ(sink.written(), 10u);
    EXPECT_THAT(sink.Summary(), HasSubstr("10 events written, 15 dropped (the writer was behind"));
    // Room again once written.
    sink.Write(line);
    sink.Flush();
    EXPECT_EQ(sink.written(), 11u);
  }
  EXPECT_EQ(Lines(f).size(), 11u);
  std::fclose(f);
}

TEST(TraceSinkTest, ConcurrentEmittersEveryEventWrittenOrCounted) {
  FILE* f = std::tmpfile();
  constexpr int kThreads = 4, kEach = 20000;
  uint64_t written = 0, dropped = 0;
  {
    Sink sink(f, false, kFault, /*buffer_bytes=*/64 << 10);  // small: some drops are likely
    ScopedInstall install(&sink);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([t] {
        for (int i = 0; i < kEach; ++i) {
          if (On(kFault)) Emit(kFault, "vtd", "fault", {Dec("t", t), Dec("i", i)});
        }
      });
    }
    for (std::thread& th : threads) th.join();
    sink.Flush();
    written = sink.written();
    dropped = sink.dropped();
  }
  EXPECT_EQ(written + dropped, uint64_t{kThreads} * kEach);
  std::vector<std::string> lines = Lines(f);
  EXPECT_EQ(lines.size(), written);
  for (const std::string& l : lines) ASSERT_THAT(l, MatchesRegex(R"([0-9.]+ vtd fault t=[0-3] i=[0-9]+)"));
  std::fclose(f);
}

TEST(TraceSinkTest, DestructorWritesWhatIsQueued) {
  FILE* f = std::tmpfile();
  {
    Sink sink(f, false, kAllClasses);
    for (int i = 0; i < 1000; ++i) sink.Write("x");
  }
  EXPECT_EQ(Lines(f).size(), 1000u);
  std::fclose(f);
}

TEST(DumpRequestTest, Parse) {
  auto r = ParseDumpRequest("00:03.0");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rid, 0x18);
  EXPECT_FALSE(r->pasid);
  EXPECT_FALSE(r->iova);
  r = ParseDumpRequest("0x118,pasid=5,iova=0x7f0000001000");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rid, 0x118);
  EXPECT_EQ(r->pasid, 5u);
  EXPECT_EQ(r->iova, 0x7f0000001000u);
  EXPECT_THAT(std::string(ParseDumpRequest("00:20.0").status().message()), HasSubstr("bad bb:dd.f"));
  EXPECT_THAT(std::string(ParseDumpRequest("x").status().message()), HasSubstr("bad requester id"));
  EXPECT_THAT(std::string(ParseDumpRequest("16,foo=1").status().message()), HasSubstr("unknown key 'foo'"));
  EXPECT_THAT(std::string(ParseDumpRequest("16,pasid=0x100000").status().message()), HasSubstr("above 20 bits"));
}

TEST(DumpWriterTest, CapsLines) {
  DumpWriter w(3);
  for (int i = 0; i < 10; ++i) w.Line("l");
  EXPECT_TRUE(w.full());
  EXPECT_EQ(w.Finish(), "l\nl\nl\n... (7 more lines cut)\n");
}

}  // namespace
}  // namespace ionest::trace

#include "devices/uart16550.h"

#include <string>
#include <thread>
#include <vector>

#include "devices/device_test_util.h"
#include "gtest/gtest.h"

namespace ionest {
namespace {

using testing::FakeIrqLine;
using testing::Read8;
using testing::Write8;

enum { RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

class UartTest : public ::testing::Test {
 protected:
  FakeIrqLine irq;
  std::string out;
  Uart16550 uart{irq, [this](uint8_t b) { out.push_back(static_cast<char>(b)); }};
};

TEST_F(UartTest, TransmitGoesToCallback) {
  for (char c : std::string("hi\n")) Write8(uart, RBR, static_cast<uint8_t>(c));
  EXPECT_EQ(out, "hi\n");
  EXPECT_EQ(Read8(uart, LSR) & 0x60, 0x60);  // THRE | TEMT
}

TEST_F(UartTest, DivisorLatchIsSeparateFromThrAndIer) {
  Write8(uart, LCR, 0x80);  // DLAB
  Write8(uart, RBR, 0x01);  // DLL
  Write8(uart, IER, 0x02);  // DLM
  EXPECT_EQ(out, "");       // not transmitted
  EXPECT_EQ(Read8(uart, RBR), 0x01);
  EXPECT_EQ(Read8(uart, IER), 0x02);
  Write8(uart, LCR, 0x03);  // 8N1, DLAB off
  EXPECT_EQ(Read8(uart, IER), 0x00);
  EXPECT_EQ(Read8(uart, LCR), 0x03);
  Write8(uart, LCR, 0x83);
  EXPECT_EQ(Read8(uart, RBR), 0x01);  // latch kept
}

TEST_F(UartTest, ScratchRegisterAndNoInterruptIir) {
  Write8(uart, SCR, 0x5a);
  EXPECT_EQ(Read8(uart, SCR), 0x5a);
  EXPECT_EQ(Read8(uart, IIR), 0x01);  // no interrupt pending, FIFOs off
}

TEST_F(UartTest, ReceiveRaisesRxInterruptAndDrains) {
  Write8(uart, IER, 0x01);  // ERBFI
  EXPECT_FALSE(irq.level());
  const uint8_t in[] = {'a', 'b'};
  EXPECT_EQ(uart.PushInput(in), 2u);
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(Read8(uart, IIR) & 0x0f, 0x04);  // received data available
  EXPECT_EQ(Read8(uart, LSR) & 0x01, 0x01);
  EXPECT_EQ(Read8(uart, RBR), 'a');
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(Read8(uart, RBR), 'b');
  EXPECT_FALSE(irq.level());
  EXPECT_EQ(Read8(uart, LSR) & 0x01, 0x00);
  EXPECT_EQ(Read8(uart, RBR), 0x00);  // empty read harmless
}

TEST_F(UartTest, ThreInterruptOnEnableClearedByIirReadAndRearmedByWrite) {
  Write8(uart, IER, 0x02);  // ETBEI with empty THR ⇒ THRE interrupt
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(Read8(uart, IIR), 0x02);
  EXPECT_FALSE(irq.level());  // IIR read cleared it
  EXPECT_EQ(Read8(uart, IIR), 0x01);
  Write8(uart, RBR, 'x');
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(irq.rising_edges(), 2);
  Write8(uart, IER, 0x00);
  EXPECT_FALSE(irq.level());
}

TEST_F(UartTest, RxHasPriorityOverThre) {
  Write8(uart, IER, 0x03);
  const uint8_t in[] = {'z'};
  uart.PushInput(in);
  EXPECT_EQ(Read8(uart, IIR) & 0x0f, 0x04);
  EXPECT_EQ(Read8(uart, RBR), 'z');
  EXPECT_EQ(Read8(uart, IIR) & 0x0f, 0x02);
}

TEST_F(UartTest, FifoEnableReportsInIirAndClearRxDropsFifoContents) {
  Write8(uart, FCR, 0x01);
  EXPECT_EQ(Read8(uart, IIR) & 0xc0, 0xc0);
  std::vector<uint8_t> in(20, 'q');
  in[16] = 'r';
  ASSERT_EQ(uart.PushInput(in), 20u);
  Write8(uart, FCR, 0x03);  // clear RX FIFO (first 16 bytes)
  EXPECT_EQ(uart.PendingInput(), 4u);
  EXPECT_EQ(Read8(uart, RBR), 'r');
}

TEST_F(UartTest, InputIsBounded) {
  std::vector<uint8_t> big(Uart16550::kInputCapacity + 100, 'x');
  EXPECT_EQ(uart.PushInput(big), Uart16550::kInputCapacity);
  const uint8_t more[] = {'y'};
  EXPECT_EQ(uart.PushInput(more), 0u);
  EXPECT_EQ(uart.PendingInput(), Uart16550::kInputCapacity);
}

TEST_F(UartTest, LoopbackEchoesAndWiresModemLines) {
  Write8(uart, MCR, 0x10);  // LOOP
  EXPECT_EQ(Read8(uart, MSR) & 0xf0, 0x00);
  Write8(uart, MCR, 0x1f);  // LOOP | OUT2 | OUT1 | RTS | DTR
  EXPECT_EQ(Read8(uart, MSR), 0xf0 | 0x0b);  // all inputs + DCTS/DDSR/DDCD deltas
  EXPECT_EQ(Read8(uart, MSR), 0xf0);          // deltas cleared by the read
  Write8(uart, MCR, 0x1b);                    // OUT1 falls ⇒ trailing-edge RI
  EXPECT_EQ(Read8(uart, MSR) & 0x0f, 0x04);
  Write8(uart, RBR, 'L');
  EXPECT_EQ(out, "");  // not sent out
  EXPECT_EQ(Read8(uart, RBR), 'L');
  // Second byte into the 1-byte holding register overruns.
  Write8(uart, RBR, '1');
  Write8(uart, RBR, '2');
  EXPECT_EQ(Read8(uart, LSR) & 0x02, 0x02);
  EXPECT_EQ(Read8(uart, LSR) & 0x02, 0x00);  // cleared by read
  Write8(uart, MCR, 0x00);
  EXPECT_EQ(Read8(uart, MSR) & 0xb0, 0xb0);  // CTS/DSR/DCD outside loopback
}

TEST_F(UartTest, LineStatusInterruptOnOverrun) {
  Write8(uart, MCR, 0x10);
  Write8(uart, IER, 0x04);  // ELSI
  Write8(uart, RBR, '1');
  EXPECT_FALSE(irq.level());
  Write8(uart, RBR, '2');
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(Read8(uart, IIR) & 0x0f, 0x06);
  Read8(uart, LSR);
  EXPECT_FALSE(irq.level());
}

TEST_F(UartTest, OutOfRangeAndWideAccessesAreSafe) {
  uint8_t buf[16];
  std::fill(std::begin(buf), std::end(buf), 0xff);
  uart.IoRead(6, buf, 16);  // runs past the register file
  EXPECT_EQ(buf[2], 0xff);
  uart.IoWrite(100, buf, 4);
  uart.IoRead(~uint64_t{0}, buf, 1);
  EXPECT_EQ(out, "");
}

TEST_F(UartTest, ConcurrentInputAndGuestReadsLoseNothing) {
  Write8(uart, IER, 0x01);
  constexpr int kBytes = 3000;
  std::thread producer([&] {
    for (int i = 0; i < kBytes;) {
      const uint8_t b = static_cast<uint8_t>(i);
      if (uart.PushInput({&b, 1}) == 1) ++i;
    }
  });
  int got = 0;
  while (got < kBytes) {
    if (Read8(uart, LSR) & 1) {
      EXPECT_EQ(Read8(uart, RBR), static_cast<uint8_t>(got));
      ++got;
    }
  }
  producer.join();
  EXPECT_FALSE(irq.level());
}

}  // namespace
}  // namespace ionest

//! A polled driver for the SMSC LAN9118 Ethernet controller as QEMU's mps2-an385 board has it
//! (at 0x4020_0000; QEMU's `hw/net/lan9118.c` is the model), implementing smoltcp's
//! `phy::Device`. No interrupts and no DMA: received frames are read out of the RX data FIFO
//! when smoltcp asks for one, frames to send are written into the TX data FIFO.
//!
//! The same driver serves embassy-net (`embassy_net_driver::Driver`): with no interrupt to wake
//! the stack when a frame arrives, it registers the stack's waker when it finds none, and the
//! program's loop calls [`wake_receiver`] on every clock tick.

use core::cell::RefCell;
use core::task::{Context, Waker};

use critical_section::Mutex;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The controller's base address on mps2-an385.
pub const BASE: usize = 0x4020_0000;

// System control and status registers (byte offsets).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_DP_CTRL: usize = 0x78;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

// MAC registers, reached through MAC_CSR_CMD / MAC_CSR_DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;

const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CFG_TXSAO: u32 = 1 << 2;
const HW_CFG_SRST: u32 = 1;
const PMT_READY: u32 = 1;
const RX_STS_ERROR: u32 = 1 << 15;
const RX_DP_FFWD: u32 = 1 << 31;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;

/// Largest Ethernet frame without its CRC.
const MTU: usize = 1514;
/// Bound on every wait for the controller (register polls), so a missing device fails.
const SPINS: u32 = 100_000;

/// Why the controller could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// BYTE_TEST did not read 0x87654321: no LAN9118 at this address (or wrong endianness).
    NotFound(u32),
    /// The soft reset or the MAC register interface did not complete.
    Timeout,
}

/// The register block. Every access is a volatile 32-bit read or write.
struct Regs(usize);

impl Regs {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s contract: the base is a LAN9118 register block owned by
        // this driver; every offset used is one of its 32-bit registers.
        unsafe { core::ptr::read_volatile((self.0 + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`. FIFO pushes are only made by the one token that borrows the
        // driver mutably, so a frame's words are never interleaved with another's.
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, value) }
    }

    /// Polls until `done`, a bounded number of times.
    fn wait(&self, done: impl Fn(&Self) -> bool) -> Result<(), InitError> {
        for _ in 0..SPINS {
            if done(self) {
                return Ok(());
            }
        }
        Err(InitError::Timeout)
    }

    fn mac_read(&self, reg: u32) -> Result<u32, InitError> {
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0)?;
        self.write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | reg);
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0)?;
        Ok(self.read(MAC_CSR_DATA))
    }

    fn mac_write(&self, reg: u32, value: u32) -> Result<(), InitError> {
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0)?;
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, CSR_BUSY | reg);
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0)
    }

    /// Reads the next good frame into `buf`; its length without the CRC, or `None` when no
    /// frame is waiting. Bad frames are dropped and counted in `errors`.
    fn receive(&self, buf: &mut [u8], errors: &mut u32) -> Option<usize> {
        loop {
            // RX_FIFO_INF[23:16]: status words waiting, one per received frame.
            if (self.read(RX_FIFO_INF) >> 16) & 0xff == 0 {
                return None;
            }
            let status = self.read(RX_STATUS_FIFO);
            // Length in bytes including the 4-byte CRC the controller appends.
            let len = ((status >> 16) & 0x3fff) as usize;
            if status & RX_STS_ERROR != 0 || len < 4 || len > buf.len() {
                *errors = errors.wrapping_add(1);
                self.discard(len);
                continue;
            }
            // Little-endian words (the model's, and the chip's in 32-bit mode).
            for chunk in buf[..len].chunks_mut(4) {
                let word = self.read(RX_DATA_FIFO).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            return Some(len - 4);
        }
    }

    /// Drops the data of a frame whose status was read.
    fn discard(&self, len: usize) {
        let words = len.div_ceil(4);
        if words >= 4 {
            // Fast-forward; the data sheet asks for reads below four words.
            self.write(RX_DP_CTRL, RX_DP_FFWD);
            let _ = self.wait(|r| r.read(RX_DP_CTRL) & RX_DP_FFWD == 0);
        } else {
            for _ in 0..words {
                let _ = self.read(RX_DATA_FIFO);
            }
        }
    }

    /// Pushes one frame into the TX data FIFO: command A and B, then the data words.
    fn transmit(&self, frame: &[u8]) {
        let len = frame.len() as u32;
        // TX_FIFO_INF[15:0]: free bytes in the TX data FIFO (the controller drains it as it
        // sends); wait for the frame and its two command words.
        let _ = self.wait(|r| r.read(TX_FIFO_INF) & 0xffff >= len + 8);
        self.write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len);
        self.write(TX_DATA_FIFO, (len << 16) | len);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        // Statuses may overrun (TXSAO); drain them so they never hold anything up.
        while (self.read(TX_FIFO_INF) >> 16) & 0xff != 0 {
            let _ = self.read(TX_STATUS_FIFO);
        }
    }
}

/// The LAN9118 with one frame buffer each way.
pub struct Lan9118 {
    regs: Regs,
    mac: [u8; 6],
    rx: [u8; MTU + 4],
    tx: [u8; MTU],
    rx_errors: u32,
}

impl Lan9118 {
    /// Resets the controller at `base`, reads its MAC address, enables TX and RX.
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118's register block, owned by this driver alone.
    pub unsafe fn new(base: usize) -> Result<Self, InitError> {
        let regs = Regs(base);
        let test = regs.read(BYTE_TEST);
        if test != 0x8765_4321 {
            return Err(InitError::NotFound(test));
        }
        regs.write(HW_CFG, HW_CFG_SRST);
        regs.wait(|r| r.read(HW_CFG) & HW_CFG_SRST == 0)?;
        regs.wait(|r| r.read(PMT_CTRL) & PMT_READY != 0)?;
        regs.write(INT_EN, 0);
        let low = regs.mac_read(MAC_ADDRL)?.to_le_bytes();
        let high = regs.mac_read(MAC_ADDRH)?.to_le_bytes();
        // Exact-address and broadcast filtering (the reset value is promiscuous).
        regs.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        regs.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        Ok(Self {
            regs,
            mac: [low[0], low[1], low[2], low[3], high[0], high[1]],
            rx: [0; MTU + 4],
            tx: [0; MTU],
            rx_errors: 0,
        })
    }

    /// The controller's chip id and revision (0x0118_0001 for QEMU's model).
    pub fn id(&self) -> u32 {
        self.regs.read(ID_REV)
    }

    /// The MAC address (from the controller's EEPROM; QEMU's `-nic` sets it).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Frames dropped because the controller flagged them bad or too long.
    pub fn rx_errors(&self) -> u32 {
        self.rx_errors
    }
}

/// A received frame, handed to smoltcp or embassy-net.
pub struct RxToken<'a>(&'a mut [u8]);

/// Room for one frame to send.
pub struct TxToken<'a> {
    regs: &'a Regs,
    tx: &'a mut [u8; MTU],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let frame = &mut self.tx[..len.min(MTU)];
        let r = f(frame);
        self.regs.transmit(frame);
        r
    }
}

impl phy::Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let Self {
            regs,
            rx,
            tx,
            rx_errors,
            ..
        } = self;
        let len = regs.receive(rx, rx_errors)?;
        Some((RxToken(&mut rx[..len]), TxToken { regs, tx }))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            regs: &self.regs,
            tx: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// The embassy-net stack's waker, registered when it found no frame waiting.
static RX_WAKER: Mutex<RefCell<Option<Waker>>> = Mutex::new(RefCell::new(None));

/// Wakes the embassy-net stack if it waits for a frame: call it on every clock tick (this
/// driver has no receive interrupt).
pub fn wake_receiver() {
    if let Some(w) = critical_section::with(|cs| RX_WAKER.borrow(cs).borrow_mut().take()) {
        w.wake();
    }
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        phy::TxToken::consume(self, len, f)
    }
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, cx: &mut Context) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let Self {
            regs,
            rx,
            tx,
            rx_errors,
            ..
        } = self;
        match regs.receive(rx, rx_errors) {
            Some(len) => Some((RxToken(&mut rx[..len]), TxToken { regs, tx })),
            None => {
                critical_section::with(|cs| {
                    *RX_WAKER.borrow(cs).borrow_mut() = Some(cx.waker().clone());
                });
                None
            }
        }
    }

    fn transmit(&mut self, _: &mut Context) -> Option<TxToken<'_>> {
        Some(TxToken {
            regs: &self.regs,
            tx: &mut self.tx,
        })
    }

    fn link_state(&mut self, _: &mut Context) -> embassy_net_driver::LinkState {
        embassy_net_driver::LinkState::Up
    }

    fn capabilities(&self) -> embassy_net_driver::Capabilities {
        let mut caps = embassy_net_driver::Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }

    fn hardware_address(&self) -> embassy_net_driver::HardwareAddress {
        embassy_net_driver::HardwareAddress::Ethernet(self.mac)
    }
}

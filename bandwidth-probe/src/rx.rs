//! Receive timestamps taken by the kernel.
//!
//! A train's capacity is read from the spacing of its arrivals, so the arrival times must be when
//! the packets reached the host, not when a busy process got round to reading them: a receiver
//! that is descheduled for a few milliseconds and then drains its socket sees a burst of packets
//! "arriving" together, and the train looks faster than the line. On Linux the socket is asked for
//! `SO_TIMESTAMPNS`, and every datagram comes with the time the kernel received it
//! (`CLOCK_REALTIME`). Elsewhere, or if the option is refused, the time of the read is used.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel to timestamp every datagram received on `socket`; whether it agreed.
pub fn enable(socket: &UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
        match setsockopt(socket, ReceiveTimestampns, &true) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "SO_TIMESTAMPNS refused; timing arrivals in userspace");
                false
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// Wall-clock time now, since the Unix epoch.
pub fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// One datagram: its length, sender and arrival time (wall clock since the Unix epoch; the
/// kernel's timestamp when there is one).
pub async fn recv_from(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Duration)> {
    #[cfg(target_os = "linux")]
    {
        socket
            .async_io(Interest::READABLE, || linux::recv(socket, buf))
            .await
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (n, peer) = socket.recv_from(buf).await?;
        Ok((n, peer, wall_now()))
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use nix::sys::time::TimeSpec;
    use tokio::net::UdpSocket;

    pub(super) fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Duration)> {
        let mut cmsg = nix::cmsg_space!(TimeSpec);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut at = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    at = Some(Duration::from(ts));
                }
            }
        }
        let peer = msg.address.as_ref().and_then(to_std).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "datagram without a sender")
        })?;
        Ok((msg.bytes, peer, at.unwrap_or_else(super::wall_now)))
    }

    fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::from((v4.ip(), v4.port())));
        }
        let v6 = a.as_sockaddr_in6()?;
        Some(SocketAddr::V6(std::net::SocketAddrV6::new(
            v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kernel_timestamps_are_wall_clock_and_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(enable(&rx), "SO_TIMESTAMPNS on a UDP socket");
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let before = wall_now();
        for i in 0..3u8 {
            tx.send_to(&[i; 100], rx.local_addr().unwrap())
                .await
                .unwrap();
        }
        let mut buf = [0u8; 2048];
        let mut last = Duration::ZERO;
        for i in 0..3u8 {
            let (n, peer, at) = recv_from(&rx, &mut buf).await.unwrap();
            assert_eq!((n, buf[0]), (100, i));
            assert_eq!(peer, tx.local_addr().unwrap());
            assert!(at >= last && at + Duration::from_millis(5) >= before);
            last = at;
        }
        assert!(last <= wall_now());
    }
}

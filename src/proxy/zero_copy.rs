#[cfg(test)]
mod size_probe {
    #[test]
    fn probe() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let a = tokio::net::UnixStream::from_std({a.set_nonblocking(true).unwrap(); a}).unwrap();
            let b = tokio::net::UnixStream::from_std({b.set_nonblocking(true).unwrap(); b}).unwrap();
            let f = super::run(&super::PIPES, super::End { socket: a, read_ahead: bytes::Bytes::new(), send_deadline: None }, super::End { socket: b, read_ahead: bytes::Bytes::new(), send_deadline: None });
            eprintln!("run future: {} bytes", std::mem::size_of_val(&f));
            let (c, d) = tokio::io::duplex(64);
            let mut c = c; let mut d = d;
            let g = crate::proxy::splice::copy_bidirectional(&mut c, &mut d);
            eprintln!("copy future: {} bytes", std::mem::size_of_val(&g));
        });
    }
}

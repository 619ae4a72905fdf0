use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_becomes_ticket() {
    let (app, account, fwd) = spawn_app_with_acme(&[]).await;
    let addr = app.smtp_addr;
    let reply = tokio::task::spawn_blocking(move || {
        let (mut c, greeting) = RawSmtp::connect(addr).unwrap();
        assert_eq!(greeting.code, 220);
        assert_eq!(c.cmd("EHLO client.test").unwrap().code, 250);
        c.send_mail(
            "ana@customer.test",
            &fwd,
            "From: Ana <ana@customer.test>\nSubject: Hello\n\nWhere is my order?\n",
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(reply.code, 250, "{}", reply.text);
    let tickets = app
        .store
        .tickets(postern::domain::AccountId(account), None)
        .await
        .unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].subject, "Hello");
    assert_eq!(tickets[0].customer.as_deref(), Some("ana@customer.test"));
    app.stop().await;
}
